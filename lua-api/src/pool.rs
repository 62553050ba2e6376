//! Outbound connection pools (OpenResty's cosocket pools): per VM, per key
//! (`lunet.connect`'s address, or its `pool` option).
//!
//! Protocol:
//! 1. `sock:setkeepalive([idle_ms [, size]])` (`core.setkeepalive`) checks
//!    the connection is clean (open, nobody waits on it, nothing unread,
//!    its output flushed), gives it a new id ([`Slab::reissue`]: same slab
//!    index, so its reactor registration stays valid; the caller's socket
//!    object now misses and reads as closed), marks it
//!    [`ConnectionPhase::Pooled`] with an idle deadline (the linger timer
//!    of a closing connection serves as the idle timer) and puts it at the
//!    back of its key's list, dropping the oldest past `size`.
//! 2. `lunet.connect` first asks `core.pool_take(key)`: the newest pooled
//!    connection of that key that is still clean (the peer did not close
//!    it or send anything: a `MSG_PEEK` read says so) is opened again under
//!    the id it was pooled with, and wrapped in a new socket object. Stale
//!    ones are dropped on the way.
//! 3. While pooled, readiness (the peer closed, or sent bytes nobody asked
//!    for) drops it at once (`host/connections.rs`), and so does its idle
//!    deadline. A pooled connection does not keep its service alive.
//!
//! [`Slab::reissue`]: crate::slab::Slab::reissue

use std::collections::{HashMap, VecDeque};

use lunet_core::{now_ms, Runtime};
use mlua::{Lua, Table, Value};

use crate::caps::{self, Capability};
use crate::ids::{ConnectionId, TimerKey};
use crate::state::{with_state, ConnEntry, ConnectionPhase, VmState};

/// OpenResty's lua_socket_keepalive_timeout.
pub const DEFAULT_IDLE_MS: u64 = 60_000;
/// OpenResty's lua_socket_pool_size.
pub const DEFAULT_SIZE: usize = 30;

/// The pooled connections of one VM, by key, oldest first. An id whose
/// entry was dropped meanwhile is skipped when met.
#[derive(Default)]
pub struct Pool {
    by_key: HashMap<String, VecDeque<ConnectionId>>,
}

/// Why a connection cannot go back to a pool.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// An I/O word for `nil, err`; the connection was closed.
    Closed(&'static str),
    /// Misuse: raised.
    Misuse(&'static str),
}

/// Whether a pooled connection is still clean: nothing buffered, no end of
/// stream or failure seen, and the kernel holds nothing unread for it.
fn clean(entry: &ConnEntry) -> bool {
    if entry.conn.eof || entry.conn.failed || !entry.conn.input.is_empty() {
        return false;
    }
    let mut byte = [0u8; 1];
    matches!(
        entry.conn.stream.peek(&mut byte),
        Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
    )
}

/// Drops a pooled connection whose peer spoke or left (readiness while
/// pooled); called by the scheduler.
pub fn on_readiness(state: &mut VmState, id: ConnectionId) {
    if state.conns.get(id).is_some_and(|entry| !clean(entry)) {
        state.conns.remove(id);
    }
}

/// Step 1.
fn put(
    state: &mut VmState,
    runtime: &Runtime,
    id: ConnectionId,
    key: &str,
    idle_ms: u64,
    size: usize,
) -> Result<(), Refusal> {
    let Some(entry) = state.conns.get_mut(id) else {
        return Err(Refusal::Closed("closed"));
    };
    if entry.count.is_some() {
        return Err(Refusal::Misuse(
            "sock:setkeepalive: only connections made by lunet.connect go back to a pool",
        ));
    }
    if entry.phase != ConnectionPhase::Open {
        return Err(Refusal::Closed("closed"));
    }
    if entry.reader.is_some() || !entry.writers.is_empty() {
        return Err(Refusal::Misuse(
            "sock:setkeepalive: socket busy: a session waits on it",
        ));
    }
    let _ = entry.conn.flush();
    let dirty = if entry.conn.failed || entry.conn.eof {
        Some("closed")
    } else if !entry.conn.input.is_empty() {
        Some("unread data")
    } else if !entry.conn.output.is_empty() {
        Some("unsent data")
    } else {
        None
    };
    if let Some(word) = dirty {
        // A connection in that state cannot be reused: it is closed, as
        // OpenResty does.
        entry.phase = ConnectionPhase::Closing;
        state.mark_dirty(id);
        return Err(Refusal::Closed(word));
    }
    let service = state.service();
    let Some(pooled) = state.conns.reissue(id) else {
        return Err(Refusal::Closed("closed"));
    };
    let Some(entry) = state.conns.get_mut(pooled) else {
        return Err(Refusal::Closed("closed"));
    };
    let deadline = now_ms().saturating_add(idle_ms);
    entry.phase = ConnectionPhase::Pooled;
    entry.timeout_ms = 0;
    // The slice's flush must not look for it under the old id.
    entry.dirty = false;
    entry.linger_deadline = Some(deadline);
    if let Some(service) = service {
        runtime.add_timer(&service, deadline, TimerKey::Connection(pooled).to_raw());
    }
    let list = state.pool.by_key.entry(key.to_string()).or_default();
    list.push_back(pooled);
    while list.len() > size {
        if let Some(oldest) = list.pop_front() {
            state.conns.remove(oldest);
        }
    }
    Ok(())
}

/// Step 2: the newest clean pooled connection of `key`, opened again.
fn take(state: &mut VmState, key: &str, timeout_ms: u64) -> Option<ConnectionId> {
    let list = state.pool.by_key.get_mut(key)?;
    let mut found = None;
    while let Some(id) = list.pop_back() {
        let Some(entry) = state.conns.get_mut(id) else {
            continue;
        };
        if entry.phase != ConnectionPhase::Pooled {
            continue;
        }
        if clean(entry) {
            entry.phase = ConnectionPhase::Open;
            entry.linger_deadline = None;
            entry.timeout_ms = timeout_ms;
            found = Some(id);
            break;
        }
        state.conns.remove(id);
    }
    if list.is_empty() {
        state.pool.by_key.remove(key);
    }
    found
}

/// A count argument: nil, or a number >= 0.
fn count(value: &Value) -> Result<Option<u64>, ()> {
    match value {
        Value::Nil => Ok(None),
        Value::Integer(n) if *n >= 0 => Ok(Some(*n as u64)),
        Value::Number(f) if *f >= 0.0 && f.is_finite() => Ok(Some(f.ceil() as u64)),
        _ => Err(()),
    }
}

/// Puts `setkeepalive` and `pool_take` on `core`.
pub fn install(lua: &Lua, runtime: &Runtime, core: &Table) -> mlua::Result<()> {
    let rt = runtime.clone();
    core.set(
        "setkeepalive",
        lua.create_function(
            move |lua, (id, key, idle, size): (i64, mlua::LuaString, Value, Value)| {
                // 0 or nil: the defaults, as OpenResty.
                let (Ok(idle_ms), Ok(size)) = (count(&idle), count(&size)) else {
                    return Ok((
                        None,
                        Some("sock:setkeepalive: idle_ms and size must be numbers >= 0"),
                        Some("lunet:misuse"),
                    ));
                };
                let idle_ms = idle_ms.filter(|&ms| ms > 0).unwrap_or(DEFAULT_IDLE_MS);
                let size = size.filter(|&n| n > 0).map_or(DEFAULT_SIZE, |n| n as usize);
                let key = key.to_string_lossy();
                let id = ConnectionId::from_lua_integer(id);
                let result = with_state(lua, |state| put(state, &rt, id, &key, idle_ms, size))?;
                // Misuse comes back as `nil, message, MISUSE`: the wrapper
                // in prelude.lua raises it at its caller.
                Ok(match result {
                    Ok(()) => (Some(true), None, None),
                    Err(Refusal::Closed(word)) => (None, Some(word), None),
                    Err(Refusal::Misuse(message)) => (None, Some(message), Some("lunet:misuse")),
                })
            },
        )?,
    )?;
    core.set(
        "pool_take",
        lua.create_function(|lua, (key, timeout): (mlua::LuaString, Option<f64>)| {
            caps::require(lua, Capability::Net, "lunet.connect")?;
            let timeout_ms = timeout.filter(|t| *t > 0.0).map_or(0, |t| t.ceil() as u64);
            let key = key.to_string_lossy();
            let id = with_state(lua, |state| take(state, &key, timeout_ms))?;
            Ok(id.map(|id| id.to_raw() as i64))
        })?,
    )?;
    Ok(())
}
