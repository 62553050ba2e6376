//! What the C functions on the raw Lua stack share (`core.readresp`,
//! `core.write`): how they are made and how they reach their VM's state.
//!
//! Contract of such a function: while it calls the Lua API, which raises an
//! error by `longjmp`, its frames hold only plain data and raw pointers
//! (nothing whose destructor would be skipped); it reaches the VM's state
//! only between Lua API calls that allocate, through
//! [`with_state_of`](crate::state::with_state_of) with the VM identity
//! its closure carries as upvalue 1; a Rust panic inside is caught and
//! raised as a Lua error.

use std::os::raw::{c_char, c_int};
use std::ptr;

use mlua::{ffi, Function, Lua};

use crate::state::vm_identity;

/// `function` as a Lua closure whose upvalue 1 is the identity of `lua`'s
/// VM (what [`identity`] reads back).
pub fn closure(lua: &Lua, function: ffi::lua_CFunction) -> mlua::Result<Function> {
    let identity = vm_identity(lua)?;
    // SAFETY: exec_raw runs the closure in a protected call; it leaves
    // exactly the new closure above the arguments' base, which it returns.
    unsafe {
        lua.exec_raw((), |state| {
            ffi::lua_pushinteger(state, identity as ffi::lua_Integer);
            ffi::lua_pushcclosure(state, function, 1);
        })
    }
}

/// The VM identity of a closure made by [`closure`].
///
/// # Safety
/// `state` runs a closure made by [`closure`].
pub unsafe fn identity(state: *mut ffi::lua_State) -> usize {
    ffi::lua_tointegerx(state, ffi::lua_upvalueindex(1), ptr::null_mut()) as usize
}

/// Calls the function in upvalue 2 (the mlua function a fast path stands
/// for) with the arguments on the stack and answers what it answers.
///
/// # Safety
/// `state` runs a C closure whose upvalue 2 is a function.
pub unsafe fn fallback(state: *mut ffi::lua_State) -> c_int {
    let top = ffi::lua_gettop(state);
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(2));
    ffi::lua_insert(state, 1);
    ffi::lua_call(state, top, ffi::LUA_MULTRET);
    ffi::lua_gettop(state)
}

/// Raises `message` (a static C string).
///
/// # Safety
/// Nothing with a destructor may be live in the calling frames.
pub unsafe fn raise(state: *mut ffi::lua_State, message: *const c_char) -> c_int {
    ffi::lua_pushstring(state, message);
    ffi::lua_error(state)
}

/// The message of [`StateUnavailable`](crate::state::StateUnavailable), as
/// a C string.
pub const STATE_UNAVAILABLE: &std::ffi::CStr =
    c"lunet: internal error: the VM's state is not available here";

/// Pushes a writer's answer: `true, nil` (queued), `false` (wait for room,
/// then write again), `nil, "overloaded"` or `nil, "closed"`; returns how
/// many values it pushed.
///
/// # Safety
/// `state` has room for two values.
pub unsafe fn push_queued(state: *mut ffi::lua_State, queued: crate::api::Queued) -> c_int {
    use crate::api::Queued;
    match queued {
        Queued::Ok => {
            ffi::lua_pushboolean(state, 1);
            ffi::lua_pushnil(state);
            2
        }
        Queued::Wait => {
            ffi::lua_pushboolean(state, 0);
            1
        }
        Queued::Overloaded => {
            ffi::lua_pushnil(state);
            ffi::lua_pushstring(state, c"overloaded".as_ptr());
            2
        }
        Queued::Closed => {
            ffi::lua_pushnil(state);
            ffi::lua_pushstring(state, c"closed".as_ptr());
            2
        }
    }
}
