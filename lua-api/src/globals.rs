//! The globals of a VM: its standard libraries are opened on first use.
//!
//! A fresh VM holds the base library and `string` (strings need their
//! metatable from the start: methods, and arithmetic on numeric strings).
//! The other libraries cost about 10 KB per VM, which is half of what an
//! idle service may hold, so `prelude.lua` gives the globals table an
//! `__index` that opens them when a script first names one
//! (`prelude/libraries.lua` has the policy: the sandbox's subset, lunet's
//! `coroutine`, `package` and `require`). The functions here are light C
//! functions (no upvalue: they cost the VM no memory):
//!
//! - `open_library(name, sandboxed)`: opens a standard library as
//!   `luaL_requiref` does (so it is also in `package.loaded`) and returns it,
//!   without making it a global; `nil` for other names, and for `io`,
//!   `debug` and `package` when `sandboxed`.
//! - `loaded()`: the table of loaded modules (`package.loaded`, which a
//!   VM without the package library can still reach this way).
//! - `on_globals_metatable(fn)`: registers [`OPEN_ALL`].
//! - `getmetatable` and `setmetatable` replace the base library's: the
//!   same functions, except that a script reaching for the globals
//!   table's metatable (to make undeclared globals an error, say) first
//!   has every library opened and lunet's metatable removed
//!   ([`OPEN_ALL`], a Lua function the prelude registers), so its
//!   metatable is the only one and finds every library.

use std::os::raw::c_int;

use mlua::ffi;

/// Registry key of the Lua function that opens every library not opened
/// yet and takes lunet's metatable off the globals table.
pub const OPEN_ALL: &std::ffi::CStr = c"lunet.open_all";

/// `open_library(name, sandboxed)` (see the module header).
pub unsafe extern "C-unwind" fn open_library(state: *mut ffi::lua_State) -> c_int {
    let mut len = 0;
    let name = ffi::lua_tolstring(state, 1, &mut len);
    if name.is_null() {
        return 0;
    }
    let sandboxed = ffi::lua_toboolean(state, 2) != 0;
    // SAFETY: Lua keeps the string alive while it is on the stack.
    let bytes = std::slice::from_raw_parts(name.cast::<u8>(), len);
    let (name, open): (&std::ffi::CStr, ffi::lua_CFunction) = match bytes {
        b"coroutine" => (c"coroutine", ffi::luaopen_coroutine),
        b"string" => (c"string", ffi::luaopen_string),
        b"table" => (c"table", ffi::luaopen_table),
        b"math" => (c"math", ffi::luaopen_math),
        b"utf8" => (c"utf8", ffi::luaopen_utf8),
        b"os" => (c"os", ffi::luaopen_os),
        b"io" if !sandboxed => (c"io", ffi::luaopen_io),
        b"package" if !sandboxed => (c"package", ffi::luaopen_package),
        b"debug" if !sandboxed => (c"debug", ffi::luaopen_debug),
        _ => return 0,
    };
    // As `luaL_requiref`, but with raw accesses: the table of loaded
    // modules has an `__index` (prelude/libraries.lua) that comes back here.
    ffi::luaL_getsubtable(state, ffi::LUA_REGISTRYINDEX, ffi::LUA_LOADED_TABLE);
    let loaded = ffi::lua_gettop(state);
    ffi::lua_pushstring(state, name.as_ptr());
    if ffi::lua_rawget(state, loaded) == ffi::LUA_TNIL {
        ffi::lua_pop(state, 1);
        ffi::lua_pushcfunction(state, open);
        ffi::lua_pushstring(state, name.as_ptr());
        ffi::lua_call(state, 1, 1);
        ffi::lua_pushstring(state, name.as_ptr());
        ffi::lua_pushvalue(state, -2);
        ffi::lua_rawset(state, loaded);
    }
    1
}

/// `loaded()`: the registry's table of loaded modules.
pub unsafe extern "C-unwind" fn loaded(state: *mut ffi::lua_State) -> c_int {
    ffi::luaL_getsubtable(state, ffi::LUA_REGISTRYINDEX, ffi::LUA_LOADED_TABLE);
    1
}

/// True when the value at `index` is the globals table and its metatable
/// is still lunet's (the registry holds [`OPEN_ALL`]).
unsafe fn lunet_globals(state: *mut ffi::lua_State, index: c_int) -> bool {
    ffi::lua_pushglobaltable(state);
    let globals = ffi::lua_rawequal(state, index, -1) != 0;
    ffi::lua_pop(state, 1);
    if !globals {
        return false;
    }
    let pending =
        ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, OPEN_ALL.as_ptr()) != ffi::LUA_TNIL;
    ffi::lua_pop(state, 1);
    pending
}

/// Takes [`OPEN_ALL`] out of the registry and calls it.
unsafe fn open_all(state: *mut ffi::lua_State) {
    ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, OPEN_ALL.as_ptr());
    ffi::lua_pushnil(state);
    ffi::lua_setfield(state, ffi::LUA_REGISTRYINDEX, OPEN_ALL.as_ptr());
    ffi::lua_call(state, 0, 0);
}

/// `on_globals_metatable(fn)`: registers [`OPEN_ALL`].
pub unsafe extern "C-unwind" fn on_globals_metatable(state: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checktype(state, 1, ffi::LUA_TFUNCTION);
    ffi::lua_settop(state, 1);
    ffi::lua_setfield(state, ffi::LUA_REGISTRYINDEX, OPEN_ALL.as_ptr());
    0
}

/// The base library's `getmetatable`, except for the globals table while
/// lunet's metatable is on it (see the module header).
pub unsafe extern "C-unwind" fn getmetatable(state: *mut ffi::lua_State) -> c_int {
    ffi::luaL_checkany(state, 1);
    if lunet_globals(state, 1) {
        open_all(state);
    }
    if ffi::lua_getmetatable(state, 1) == 0 {
        ffi::lua_pushnil(state);
        return 1;
    }
    // Its __metatable field if it has one, else the metatable.
    ffi::luaL_getmetafield(state, 1, c"__metatable".as_ptr());
    1
}

/// The base library's `setmetatable`, except for the globals table while
/// lunet's metatable is on it (see the module header).
pub unsafe extern "C-unwind" fn setmetatable(state: *mut ffi::lua_State) -> c_int {
    let kind = ffi::lua_type(state, 2);
    ffi::luaL_checktype(state, 1, ffi::LUA_TTABLE);
    if kind != ffi::LUA_TNIL && kind != ffi::LUA_TTABLE {
        return ffi::luaL_argerror(state, 2, c"nil or table expected".as_ptr());
    }
    if lunet_globals(state, 1) {
        open_all(state);
    }
    if ffi::luaL_getmetafield(state, 1, c"__metatable".as_ptr()) != ffi::LUA_TNIL {
        return ffi::luaL_error(state, c"cannot change a protected metatable".as_ptr());
    }
    ffi::lua_settop(state, 2);
    ffi::lua_setmetatable(state, 1);
    1
}

/// Puts the base library's replacements in place (call once, on a fresh VM).
pub fn install(lua: &mlua::Lua) -> mlua::Result<()> {
    // SAFETY: light C functions that keep Lua's own calling conventions.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_pushcfunction(state, getmetatable);
            ffi::lua_setglobal(state, c"getmetatable".as_ptr());
            ffi::lua_pushcfunction(state, setmetatable);
            ffi::lua_setglobal(state, c"setmetatable".as_ptr());
        })
    }
}

/// Puts `open_library`, `loaded` and `on_globals_metatable` on `core`
/// (light C functions).
pub fn put(lua: &mlua::Lua, core: &mlua::Table) -> mlua::Result<()> {
    // SAFETY: as above.
    unsafe {
        core.raw_set("open_library", lua.create_c_function(open_library)?)?;
        core.raw_set("loaded", lua.create_c_function(loaded)?)?;
        core.raw_set(
            "on_globals_metatable",
            lua.create_c_function(on_globals_metatable)?,
        )?;
    }
    Ok(())
}
