//! The fast paths of a shared dict's `get`, `set`, `add`, `replace`,
//! `delete`, `incr` and `ttl`: C functions on the raw Lua stack (see
//! `raw.rs`) for the usual call, a dict made by `lunet.shared.dict`, a
//! string key, values that are strings, numbers or booleans and ttls that
//! are numbers. A kv server makes one or two such calls per command, and
//! mlua's callback machinery (argument handles, a lock per call) cost more
//! than the dict's work. Anything else (a number key, a string ttl, a bad
//! argument) goes to the mlua method (`dict.rs`) with the same arguments,
//! which answers or raises as before.
//!
//! How a fast path finds its dict: the first dict a VM opens has the
//! methods in its metatable's `__index` table replaced by the fast paths
//! (upvalues: 1 a weak-keyed table, dict userdata -> its [`Target`]; 2 the
//! mlua method; 3 the write mode, for set/add/replace). Every dict opened
//! is entered in that table with a plain userdata that owns a copy of its
//! [`Target`] (dropped by its `__gc`), so a dict the table does not know
//! (or anything else as `self`) takes the mlua method.

use std::mem::size_of;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::{ptr, slice};

use lunet_core::shared_dict::{Mode, Value as DictValue};
use mlua::{ffi, AnyUserData, Lua, Table};

use crate::dict::{valid_ttl, Stored, Target, Written};
use crate::raw::{self, raise};

/// Named registry value: the table of dicts (upvalue 1).
const DICTS: &str = "lunet.dict.fast";
/// Registry name of the metatable of the userdata that owns a `Target`.
const TARGET_METATABLE: &std::ffi::CStr = c"lunet.dict.target";
const PANICKED: &std::ffi::CStr = c"lunet: internal error in a shared dict call";

type Fast = (&'static std::ffi::CStr, ffi::lua_CFunction, Mode);

const FAST: [Fast; 7] = [
    (c"get", get, Mode::Set),
    (c"set", write, Mode::Set),
    (c"add", write, Mode::Add),
    (c"replace", write, Mode::Replace),
    (c"delete", delete, Mode::Set),
    (c"incr", incr, Mode::Set),
    (c"ttl", ttl, Mode::Set),
];

/// Enters `dict` (the userdata of a `Dict` whose target is `target`) for
/// the fast paths; the first time in this VM, installs them.
pub fn register(lua: &Lua, dict: &AnyUserData, target: Target) -> mlua::Result<()> {
    let dicts = match lua.named_registry_value::<Option<Table>>(DICTS)? {
        Some(dicts) => dicts,
        None => {
            let dicts = lua.create_table()?;
            let weak_keys = lua.create_table()?;
            weak_keys.raw_set("__mode", "k")?;
            dicts.set_metatable(Some(weak_keys))?;
            // SAFETY: a protected call with the two values on the stack;
            // it pushes and pops only.
            unsafe { lua.exec_raw::<()>((dicts.clone(), dict.clone()), |state| install(state))? };
            lua.set_named_registry_value(DICTS, &dicts)?;
            dicts
        }
    };
    // SAFETY: a protected call with the table and the dict at 1 and 2. The
    // target is written into its userdata once that has its metatable's
    // `__gc` to come (so an error while allocating leaks it at worst).
    unsafe {
        lua.exec_raw::<()>((dicts, dict.clone()), |state| {
            if ffi::luaL_newmetatable(state, TARGET_METATABLE.as_ptr()) != 0 {
                ffi::lua_pushcfunction(state, drop_target);
                ffi::lua_setfield(state, -2, c"__gc".as_ptr());
            }
            let slot = ffi::lua_newuserdatauv(state, size_of::<Option<Target>>(), 0)
                .cast::<Option<Target>>();
            ptr::write(slot, Some(target));
            ffi::lua_insert(state, -2);
            ffi::lua_setmetatable(state, -2);
            ffi::lua_pushvalue(state, 2);
            ffi::lua_insert(state, -2);
            ffi::lua_rawset(state, 1);
        })
    }
}

/// Replaces the methods of the dict at 2 by their fast paths (the table
/// of dicts is at 1).
unsafe fn install(state: *mut ffi::lua_State) {
    if ffi::lua_getmetatable(state, 2) == 0 {
        return;
    }
    if ffi::lua_getfield(state, -1, c"__index".as_ptr()) != ffi::LUA_TTABLE {
        ffi::lua_pop(state, 2);
        return;
    }
    let methods = ffi::lua_absindex(state, -1);
    for (name, function, mode) in FAST {
        ffi::lua_pushvalue(state, 1);
        if ffi::lua_getfield(state, methods, name.as_ptr()) != ffi::LUA_TFUNCTION {
            ffi::lua_pop(state, 2);
            continue;
        }
        ffi::lua_pushinteger(state, mode_code(mode));
        ffi::lua_pushcclosure(state, function, 3);
        ffi::lua_setfield(state, methods, name.as_ptr());
    }
    ffi::lua_pop(state, 2);
}

fn mode_code(mode: Mode) -> ffi::lua_Integer {
    match mode {
        Mode::Set => 0,
        Mode::Add => 1,
        Mode::Replace => 2,
    }
}

/// `__gc` of a target's userdata. It leaves `None`, which the fast paths
/// pass to the mlua method, should the userdata be reached after this.
unsafe extern "C-unwind" fn drop_target(state: *mut ffi::lua_State) -> c_int {
    let slot = ffi::lua_touserdata(state, 1).cast::<Option<Target>>();
    if !slot.is_null() {
        // Dropping two Arcs: nothing here panics.
        (*slot).take();
    }
    0
}

/// The target of the dict at 1, if it is one the table knows. It lives
/// while the dict does, which is on the stack.
unsafe fn target<'a>(state: *mut ffi::lua_State) -> Option<&'a Target> {
    ffi::lua_pushvalue(state, 1);
    let kind = ffi::lua_rawget(state, ffi::lua_upvalueindex(1));
    let slot = if kind == ffi::LUA_TUSERDATA {
        ffi::lua_touserdata(state, -1).cast::<Option<Target>>()
    } else {
        ptr::null_mut()
    };
    ffi::lua_pop(state, 1);
    slot.as_ref()?.as_ref()
}

/// The string at `index` (not a number: mlua converts those).
unsafe fn string_at<'a>(state: *mut ffi::lua_State, index: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(state, index) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0;
    let data = ffi::lua_tolstring(state, index, &mut len);
    Some(slice::from_raw_parts(data.cast::<u8>(), len))
}

/// The number at `index` as the dict stores it.
unsafe fn number_at(state: *mut ffi::lua_State, index: c_int) -> Option<DictValue> {
    if ffi::lua_type(state, index) != ffi::LUA_TNUMBER {
        return None;
    }
    Some(if ffi::lua_isinteger(state, index) != 0 {
        DictValue::Int(ffi::lua_tointegerx(state, index, ptr::null_mut()))
    } else {
        DictValue::Float(ffi::lua_tonumberx(state, index, ptr::null_mut()))
    })
}

/// The optional ttl at `index` (`Some(None)`: none); `None` when the mlua
/// method must judge it.
unsafe fn ttl_at(state: *mut ffi::lua_State, index: c_int) -> Option<Option<u64>> {
    match ffi::lua_type(state, index) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => Some(None),
        ffi::LUA_TNUMBER => valid_ttl(ffi::lua_tonumberx(state, index, ptr::null_mut())),
        _ => None,
    }
}

/// Runs `work`, raising a Lua error if it panics. `work` holds its own
/// values: nothing with a destructor is left in this frame when it raises.
unsafe fn guarded<T>(state: *mut ffi::lua_State, work: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => value,
        Err(payload) => {
            drop(payload);
            raise(state, PANICKED.as_ptr());
            unreachable!("lua_error does not return")
        }
    }
}

/// Pushes what the dict holds (nil for nothing).
unsafe fn push_value(state: *mut ffi::lua_State, value: Option<DictValue>) {
    match value {
        None => ffi::lua_pushnil(state),
        Some(DictValue::Int(i)) => ffi::lua_pushinteger(state, i),
        Some(DictValue::Float(f)) => ffi::lua_pushnumber(state, f),
        Some(DictValue::Bool(b)) => ffi::lua_pushboolean(state, c_int::from(b)),
        Some(DictValue::Str(bytes)) => {
            // Held as a raw pointer while Lua copies it, which may raise.
            let bytes = std::sync::Arc::into_raw(bytes);
            ffi::lua_pushlstring(state, bytes.cast::<std::os::raw::c_char>(), bytes.len());
            drop(std::sync::Arc::from_raw(bytes));
        }
    }
}

/// Pushes `nil` or the error word (for the second answer).
unsafe fn push_word(state: *mut ffi::lua_State, word: Option<&'static str>) {
    match word {
        None => ffi::lua_pushnil(state),
        Some(word) => {
            ffi::lua_pushlstring(state, word.as_ptr().cast(), word.len());
        }
    }
}

/// `dict:get(key)`: the value or nil.
unsafe extern "C-unwind" fn get(state: *mut ffi::lua_State) -> c_int {
    if ffi::lua_gettop(state) != 2 {
        return raw::fallback(state);
    }
    let (Some(target), Some(key)) = (target(state), string_at(state, 2)) else {
        return raw::fallback(state);
    };
    let value = guarded(state, || target.get(key));
    push_value(state, value);
    1
}

/// `dict:set/add/replace(key, value [, ttl])`: `true, nil, forcible` or
/// `nil, err, false`.
unsafe extern "C-unwind" fn write(state: *mut ffi::lua_State) -> c_int {
    let top = ffi::lua_gettop(state);
    if !(3..=4).contains(&top) {
        return raw::fallback(state);
    }
    let (Some(target), Some(key), Some(ttl)) =
        (target(state), string_at(state, 2), ttl_at(state, 4))
    else {
        return raw::fallback(state);
    };
    let value = match ffi::lua_type(state, 3) {
        ffi::LUA_TSTRING => string_at(state, 3).map(Stored::Bytes),
        ffi::LUA_TNUMBER => number_at(state, 3).map(Stored::Plain),
        ffi::LUA_TBOOLEAN => Some(Stored::Plain(DictValue::Bool(
            ffi::lua_toboolean(state, 3) != 0,
        ))),
        // nil (a delete) and what is not a value: the mlua method.
        _ => None,
    };
    let Some(value) = value else {
        return raw::fallback(state);
    };
    let mode = match ffi::lua_tointegerx(state, ffi::lua_upvalueindex(3), ptr::null_mut()) {
        1 => Mode::Add,
        2 => Mode::Replace,
        _ => Mode::Set,
    };
    let (ok, word, forcible): Written =
        guarded(state, || target.write(mode, key, Some(value), ttl));
    match ok {
        Some(ok) => ffi::lua_pushboolean(state, c_int::from(ok)),
        None => ffi::lua_pushnil(state),
    }
    push_word(state, word);
    ffi::lua_pushboolean(state, c_int::from(forcible));
    3
}

/// `dict:delete(key)`: `true`.
unsafe extern "C-unwind" fn delete(state: *mut ffi::lua_State) -> c_int {
    if ffi::lua_gettop(state) != 2 {
        return raw::fallback(state);
    }
    let (Some(target), Some(key)) = (target(state), string_at(state, 2)) else {
        return raw::fallback(state);
    };
    guarded(state, || target.delete(key));
    ffi::lua_pushboolean(state, 1);
    1
}

/// `dict:incr(key, by [, init [, init_ttl]])`: the new value, nil, or
/// `nil, err`.
unsafe extern "C-unwind" fn incr(state: *mut ffi::lua_State) -> c_int {
    let top = ffi::lua_gettop(state);
    if !(3..=5).contains(&top) {
        return raw::fallback(state);
    }
    let init = match ffi::lua_type(state, 4) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => Some(None),
        _ => number_at(state, 4).map(Some),
    };
    let (Some(target), Some(key), Some(by), Some(init), Some(init_ttl)) = (
        target(state),
        string_at(state, 2),
        number_at(state, 3),
        init,
        ttl_at(state, 5),
    ) else {
        return raw::fallback(state);
    };
    match guarded(state, || target.incr(key, by, init, init_ttl)) {
        Ok(value) => {
            push_value(state, Some(value));
            ffi::lua_pushnil(state);
        }
        Err(word) => {
            ffi::lua_pushnil(state);
            push_word(state, Some(word));
        }
    }
    2
}

/// `dict:ttl(key)`: ms left (0: no expiry), nil; or `nil, err`.
unsafe extern "C-unwind" fn ttl(state: *mut ffi::lua_State) -> c_int {
    if ffi::lua_gettop(state) != 2 {
        return raw::fallback(state);
    }
    let (Some(target), Some(key)) = (target(state), string_at(state, 2)) else {
        return raw::fallback(state);
    };
    match guarded(state, || target.ttl(key)) {
        Ok(ms) => {
            ffi::lua_pushinteger(state, ms);
            ffi::lua_pushnil(state);
        }
        Err(word) => {
            ffi::lua_pushnil(state);
            push_word(state, Some(word));
        }
    }
    2
}
