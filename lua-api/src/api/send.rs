//! The fast paths of `core.send(handle, ...)` and `core.call(handle, ...)`:
//! C functions on the raw Lua stack (see `raw.rs`) for the usual message,
//! an integer handle and arguments that are nil, booleans, numbers or
//! strings. They run once per message, and mlua's callback machinery
//! (argument handles, a lock per call) cost more than encoding it.
//! Anything else (a registered name, a table, a socket to hand over, a Sub
//! reference) goes to the mlua function (`services.rs`) with the same
//! arguments, which answers as before. Answers: send `true` when the
//! message is queued, or `nil, err`; call the call's token, or `nil, err`.
//!
//! Upvalues: 1 the VM's identity, 2 the mlua function, 3 (light userdata)
//! the `Runtime` the mlua function owns: no finalizer, no memory per VM.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use lunet_core::{Message, PostError, Runtime};
use mlua::{ffi, Function, Lua};

use crate::codec;
use crate::protocol::MessageKind;
use crate::raw::{self, raise};
use crate::state::{vm_identity, with_state_of};

/// `slow` (the mlua `core.send` or `core.call`, as `kind` says) behind
/// its fast path; `runtime` is the one `slow` owns (boxed, so it stays
/// where it is while `slow` lives, which the closure's upvalue 2 ensures).
pub fn wrap(
    lua: &Lua,
    runtime: *const Runtime,
    kind: MessageKind,
    slow: Function,
) -> mlua::Result<Function> {
    let fast: ffi::lua_CFunction = match kind {
        MessageKind::Call => call,
        _ => send,
    };
    let identity = vm_identity(lua)?;
    // SAFETY: exec_raw runs the closure in a protected call with `slow` on
    // the stack; it leaves the new closure above the arguments' base.
    unsafe {
        lua.exec_raw(slow, |state| {
            ffi::lua_pushinteger(state, identity as ffi::lua_Integer);
            ffi::lua_insert(state, -2);
            ffi::lua_pushlightuserdata(state, runtime.cast_mut().cast());
            ffi::lua_pushcclosure(state, fast, 3);
        })
    }
}

/// What became of the message.
enum Posted {
    /// Queued (with its call's token).
    Queued(u64),
    Overloaded,
    Dead,
    NoMemory,
}

unsafe extern "C-unwind" fn send(state: *mut ffi::lua_State) -> c_int {
    match post(state, MessageKind::Send) {
        None => raw::fallback(state),
        Some(Ok(Ok(Posted::Queued(_)))) => {
            ffi::lua_pushboolean(state, 1);
            1
        }
        Some(Ok(Ok(Posted::Overloaded))) => answer_error(state, c"overloaded"),
        Some(Ok(Ok(Posted::Dead))) => answer_error(state, c"dead"),
        Some(other) => raise_failure(state, other),
    }
}

unsafe extern "C-unwind" fn call(state: *mut ffi::lua_State) -> c_int {
    let handle = ffi::lua_tointegerx(state, 1, ptr::null_mut());
    let message = match post(state, MessageKind::Call) {
        None => return raw::fallback(state),
        Some(Ok(Ok(Posted::Queued(token)))) => {
            ffi::lua_pushinteger(state, token as ffi::lua_Integer);
            return 1;
        }
        Some(Ok(Ok(Posted::Overloaded))) => c"lunet.call: service :%I is overloaded",
        Some(Ok(Ok(Posted::Dead))) => c"lunet.call: service :%I is dead",
        Some(other) => return raise_failure(state, other),
    };
    ffi::lua_pushnil(state);
    ffi::lua_pushfstring(state, message.as_ptr(), handle);
    2
}

type Outcome = std::thread::Result<Result<Posted, crate::state::StateUnavailable>>;

/// Raises what is not an answer.
unsafe fn raise_failure(state: *mut ffi::lua_State, outcome: Outcome) -> c_int {
    match outcome {
        Ok(Ok(Posted::NoMemory)) => {
            raise(state, c"lunet: not enough memory for the message".as_ptr())
        }
        Ok(Err(_)) => raise(state, raw::STATE_UNAVAILABLE.as_ptr()),
        _ => raise(
            state,
            c"lunet: internal error while posting a message".as_ptr(),
        ),
    }
}

/// Posts the message the stack holds, if the fast path takes it (`None`:
/// it does not, the stack is untouched).
unsafe fn post(state: *mut ffi::lua_State, kind: MessageKind) -> Option<Outcome> {
    let top = ffi::lua_gettop(state);
    // The payload's size, if the fast path takes this message.
    let mut size = Some(4usize);
    if top < 1 || ffi::lua_isinteger(state, 1) == 0 {
        size = None;
    }
    let mut index = 2;
    while let (Some(bytes), true) = (size, index <= top) {
        size = match ffi::lua_type(state, index) {
            ffi::LUA_TNIL | ffi::LUA_TBOOLEAN => Some(bytes + 1),
            ffi::LUA_TNUMBER => Some(bytes + 9),
            ffi::LUA_TSTRING => {
                let mut len = 0;
                ffi::lua_tolstring(state, index, &mut len);
                Some(bytes + 5 + len)
            }
            _ => None,
        };
        index += 1;
    }
    let size = size?;
    let vm = raw::identity(state);
    let handle = ffi::lua_tointegerx(state, 1, ptr::null_mut()) as u64;
    let runtime = ffi::lua_touserdata(state, ffi::lua_upvalueindex(3)).cast::<Runtime>();
    // Nothing below raises until the payload is posted or dropped: the
    // values are read with calls that do not allocate.
    Some(catch_unwind(AssertUnwindSafe(|| {
        let mut payload = Vec::new();
        if payload.try_reserve_exact(size).is_err() {
            return Ok(Posted::NoMemory);
        }
        payload.extend_from_slice(&((top - 1) as u32).to_le_bytes());
        for index in 2..=top {
            match ffi::lua_type(state, index) {
                ffi::LUA_TNIL => codec::put_nil(&mut payload),
                ffi::LUA_TBOOLEAN => {
                    codec::put_boolean(&mut payload, ffi::lua_toboolean(state, index) != 0)
                }
                ffi::LUA_TNUMBER if ffi::lua_isinteger(state, index) != 0 => codec::put_integer(
                    &mut payload,
                    ffi::lua_tointegerx(state, index, ptr::null_mut()),
                ),
                ffi::LUA_TNUMBER => codec::put_number(
                    &mut payload,
                    ffi::lua_tonumberx(state, index, ptr::null_mut()),
                ),
                _ => {
                    let mut len = 0;
                    let data = ffi::lua_tolstring(state, index, &mut len);
                    codec::put_string(
                        &mut payload,
                        std::slice::from_raw_parts(data.cast::<u8>(), len),
                    )
                }
            }
        }
        // SAFETY: upvalue 3 points at the Runtime the function in upvalue 2
        // owns, alive as long as this closure is.
        let runtime = &*runtime;
        let Some(target) = runtime.service(handle) else {
            return Ok(Posted::Dead);
        };
        let (from, token) = with_state_of(vm, |vm_state| {
            let token = (kind == MessageKind::Call).then(|| vm_state.next_call_token().to_raw());
            (vm_state.self_id, token)
        })?;
        let message = Message::new(from, token.unwrap_or(0), kind.code(), payload);
        Ok(match runtime.post_message(&target, message) {
            Ok(()) => Posted::Queued(token.unwrap_or(0)),
            Err((PostError::Overloaded, _)) => Posted::Overloaded,
            Err((PostError::Dead, _)) => Posted::Dead,
        })
    })))
}

/// `nil, err`.
unsafe fn answer_error(state: *mut ffi::lua_State, err: &std::ffi::CStr) -> c_int {
    ffi::lua_pushnil(state);
    ffi::lua_pushstring(state, err.as_ptr());
    2
}
