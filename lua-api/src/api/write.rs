//! `core.write(conn, ...)`, the fast path of `sock:write`: a C function on
//! the raw Lua stack (see `raw.rs`), because it runs once per reply of a
//! server and mlua's value handles cost more than the copy (a third of
//! kv.lua's per-command cost under `redis-benchmark -P 16`).
//!
//! Returns `true, nil` (queued), `false` (nothing queued: the socket is
//! past its high-water mark, `socket::admit`; the wrapper waits for room
//! and writes again), `nil, "overloaded"` (nothing queued: the socket's
//! waiting room is full) or `nil, "closed"`. Every argument is checked
//! before any is queued: a bad one raises and queues nothing.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use mlua::{ffi, Lua, Table};

use crate::api::socket::{admit, queued, Queued};
use crate::ids::ConnectionId;
use crate::raw::{self, raise};
use crate::state::with_state_of;

pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.raw_set("write", raw::closure(lua, write)?)
}

/// What the Rust half found.
enum Written {
    Queued(Queued),
    /// The output buffer could not grow.
    NoMemory,
}

unsafe extern "C-unwind" fn write(state: *mut ffi::lua_State) -> c_int {
    let vm = raw::identity(state);
    let top = ffi::lua_gettop(state);
    let mut is_number = 0;
    let id = ffi::lua_tointegerx(state, 1, &mut is_number);
    if is_number == 0 {
        return raise(state, c"sock:write: not a socket".as_ptr());
    }
    for index in 2..=top.max(2) {
        match ffi::lua_type(state, index) {
            ffi::LUA_TSTRING => {}
            // As `tostring` shows it: Lua converts the argument in place
            // (it may allocate, so it happens before the state is lent).
            ffi::LUA_TNUMBER => {
                ffi::lua_tolstring(state, index, ptr::null_mut());
            }
            kind => {
                let name = if kind == ffi::LUA_TNONE {
                    c"nil".as_ptr()
                } else {
                    ffi::lua_typename(state, kind)
                };
                ffi::lua_pushfstring(
                    state,
                    c"sock:write: argument #%d must be a string or a number, got %s".as_ptr(),
                    (index - 1) as c_int,
                    name,
                );
                ffi::lua_error(state);
            }
        }
    }
    let id = ConnectionId::from_lua_integer(id);
    let written = catch_unwind(AssertUnwindSafe(|| {
        with_state_of(vm, |vm_state| {
            let arguments = (2..=top).map(|index| {
                let mut len = 0;
                // SAFETY: every argument is a string now; reading one
                // neither allocates nor runs Lua code, and it stays on the
                // stack (alive) until this function returns.
                unsafe {
                    let data = ffi::lua_tolstring(state, index, &mut len);
                    std::slice::from_raw_parts(data.cast::<u8>(), len)
                }
            });
            // A script-sized copy: a refusal of the system is Lua's "not
            // enough memory", never an abort (docs/internals.md, memory).
            let total: usize = arguments.clone().map(<[u8]>::len).sum();
            if let Some(refused) = admit(vm_state, id, total) {
                return Written::Queued(refused);
            }
            let Some(entry) = vm_state.conns.get_mut(id) else {
                return Written::Queued(Queued::Closed);
            };
            if entry.conn.output.try_reserve(total).is_err() {
                return Written::NoMemory;
            }
            for bytes in arguments {
                entry.conn.output.extend(bytes);
            }
            Written::Queued(queued(vm_state, id))
        })
    }));
    match written {
        Ok(Ok(Written::Queued(queued))) => raw::push_queued(state, queued),
        Ok(Ok(Written::NoMemory)) => raise(state, c"not enough memory".as_ptr()),
        Ok(Err(_)) => raise(state, raw::STATE_UNAVAILABLE.as_ptr()),
        Err(_) => raise(state, c"lunet: sock:write failed".as_ptr()),
    }
}
