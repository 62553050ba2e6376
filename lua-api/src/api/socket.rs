//! The socket methods' fast paths: read, close, peer, settimeout,
//! connect, and the note a collected socket object leaves (write is in
//! `write.rs`).

use std::cell::Cell;

use lunet_core::connection::Connection;
use lunet_core::Runtime;
use mlua::{FromLua, Lua, Table, Value};

use crate::ids::ConnectionId;
use crate::read::{self, FastRead};
use crate::state::{with_state, ConnEntry, ConnectionPhase, VmState};

pub fn build(lua: &Lua, runtime: &Runtime, core: &Table) -> mlua::Result<()> {
    // The bytes of an answer, kept between calls. Taken out of the cell
    // while in use: a finalizer that reads during the string's allocation
    // finds it empty and uses a fresh one.
    let kept = Cell::new(Vec::new());
    core.set(
        "read",
        lua.create_function(
            move |lua, (id, kind, size, delim): (i64, i64, Option<i64>, Option<mlua::LuaString>)| {
                let id = ConnectionId::from_lua_integer(id);
                let mut bytes = kept.take();
                let step = with_state(lua, |state| {
                    let delim = delim.as_ref().map(|d| d.as_bytes());
                    read::fast_read(state, id, kind, size, delim.as_deref(), &mut bytes)
                })?
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
                let answer = match step {
                    FastRead::Taken(taken) => read::answer(lua, taken, &bytes),
                    FastRead::Wait => Ok((Value::Boolean(false), None, Value::Nil)),
                    FastRead::Closed => Ok((Value::Nil, Some("closed".into()), Value::Nil)),
                };
                if bytes.capacity() <= read::KEEP_BYTES {
                    kept.set(bytes);
                }
                answer
            },
        )?,
    )?;

    super::write::install(lua, core)?;

    core.set(
        "close",
        lua.create_function(|lua, id: i64| {
            let id = ConnectionId::from_lua_integer(id);
            Ok(with_state(lua, |state| {
                match state.conns.get_mut(id) {
                    Some(entry) if entry.phase != ConnectionPhase::Closing => {
                        entry.phase = ConnectionPhase::Closing;
                        // The scheduler finishes the close after this slice.
                        state.mark_dirty(id);
                        (true, None)
                    }
                    _ => (false, Some("closed")),
                }
            })?)
        })?,
    )?;

    core.set(
        "collected",
        lua.create_function(|lua, id: i64| {
            let id = ConnectionId::from_lua_integer(id);
            // Refused only outside the VM's turn (it is being dropped, with
            // every connection).
            let _ = with_state(lua, |state| state.collected.push(id));
            Ok(())
        })?,
    )?;

    core.set(
        "peer",
        lua.create_function(|lua, id: i64| {
            let id = ConnectionId::from_lua_integer(id);
            let peer = with_state(lua, |state| {
                state.conns.get(id).and_then(|entry| entry.peer)
            })?;
            Ok(match peer {
                Some(peer) => (Some(peer.to_string()), None),
                None => (None, Some("closed")),
            })
        })?,
    )?;

    core.set(
        "settimeout",
        lua.create_function(|lua, (id, ms): (i64, Option<f64>)| {
            let id = ConnectionId::from_lua_integer(id);
            Ok(with_state(lua, |state| {
                if let Some(entry) = state.conns.get_mut(id) {
                    entry.timeout_ms = match ms {
                        Some(ms) if ms > 0.0 => ms.ceil() as u64,
                        _ => 0,
                    };
                }
            })?)
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "connect",
        lua.create_function(
            move |lua, (addr, timeout, bind): (Value, Option<f64>, Option<String>)| {
                crate::caps::require(lua, crate::caps::Capability::Net, "lunet.connect")?;
                let addr = String::from_lua(addr, lua)?;
                let parsed = match lunet_core::net::parse_addr(&addr) {
                    Ok(a) => a,
                    Err(e) => return Ok((None, Some(e.to_string()))),
                };
                let local = match bind.as_deref().map(str::parse::<std::net::IpAddr>) {
                    None => None,
                    Some(Ok(ip)) => Some(ip),
                    Some(Err(_)) => {
                        return Err(mlua::Error::runtime(format!(
                            "lunet.connect: bind must be an IP address, got '{}'",
                            bind.unwrap_or_default()
                        )))
                    }
                };
                let stream = match lunet_core::net::connect_from(parsed, local) {
                    Ok(s) => s,
                    Err(e) => {
                        let word = connect_word(&e).map_or_else(|| e.to_string(), String::from);
                        return Ok((None, Some(word)));
                    }
                };
                with_state(lua, |state| {
                    let service = state
                        .service()
                        .ok_or_else(|| mlua::Error::runtime("lunet.connect: no service"))?;
                    let timeout_ms = timeout.filter(|t| *t > 0.0).map_or(0, |t| t.ceil() as u64);
                    let id = state.conns.insert(ConnEntry::new(
                        Connection::new(stream),
                        ConnectionPhase::Connecting,
                        Some(parsed),
                        None,
                        timeout_ms,
                    ));
                    let entry = state.conns.get_mut(id).expect("just inserted");
                    let token = lunet_core::reactor::token(service.index(), id.index());
                    if let Err(e) = rt.registry().register(
                        &mut entry.conn.stream,
                        token,
                        mio::Interest::READABLE | mio::Interest::WRITABLE,
                    ) {
                        state.conns.remove(id);
                        return Ok((None, Some(format!("cannot register socket: {e}"))));
                    }
                    Ok((Some(id), None))
                })?
            },
        )?,
    )?;

    Ok(())
}

/// What became of a write (the answer of every writer: `sock:write`, the
/// codecs' writers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// Queued: it goes out when the slice ends, or as the peer reads.
    Ok,
    /// Nothing queued: the output is past the high-water mark (or other
    /// writers wait ahead). The writer waits (`OP.WRITE`) and writes again
    /// when woken.
    Wait,
    /// Nothing queued: the writers already waiting fill the socket's
    /// waiting room. "overloaded" to the writer.
    Overloaded,
    /// The connection failed or was closed.
    Closed,
}

/// What a waiting writer costs besides its bytes: its session (a
/// coroutine and its stack) is held while it waits.
pub const WAITER_COST: usize = 1024;

/// The write bound of a socket, the same for every session that writes to
/// it. Called by each writer before it queues `bytes`:
///
/// 1. Output at or under `--high-water` and nobody waiting: `None`, the
///    writer queues the whole write (one write may take the output past
///    the mark) and returns at once.
/// 2. Otherwise, after one try to flush: the writer waits (`Wait`, the
///    cost parked in `pending_write` for the wait it yields) in the order
///    writers came; all are woken when the output drains to half the mark
///    (`host/connections.rs`) and write again.
/// 3. The waiting room holds at most `--high-water` of waiting writers
///    (their bytes plus `WAITER_COST` each), and always one: past it a
///    writer gets `Overloaded` at once. So a socket holds at most about
///    twice the mark, whatever the number of writing sessions. A writer
///    that cannot wait (not yieldable) or waits past the write timeout gets
///    "overloaded" too (the Lua wrappers, `host/sessions.rs`).
pub fn admit(state: &mut VmState, id: ConnectionId, bytes: usize) -> Option<Queued> {
    let high_water = state.settings.high_water;
    let Some(entry) = state.conns.get_mut(id) else {
        return Some(Queued::Closed);
    };
    if entry.phase == ConnectionPhase::Closing || entry.conn.failed {
        return Some(Queued::Closed);
    }
    if entry.writers.is_empty() && entry.conn.output.len() <= high_water {
        return None;
    }
    if entry.phase == ConnectionPhase::Open && entry.conn.output.len() > high_water {
        // Try once now; wait only if the peer really is slow.
        let _ = entry.conn.flush();
        if entry.conn.failed {
            return Some(Queued::Closed);
        }
        if entry.writers.is_empty() && entry.conn.output.len() <= high_water {
            return None;
        }
    }
    let cost = bytes.saturating_add(WAITER_COST);
    if !entry.writers.is_empty() && entry.waiting_bytes.saturating_add(cost) > high_water {
        return Some(Queued::Overloaded);
    }
    state.pending_write = Some((id, cost));
    Some(Queued::Wait)
}

/// After a write admitted by [`admit`] queued its output on `id`: marks it
/// for the flush at the end of the slice, and tries one flush now if the
/// output crossed the high-water mark.
pub fn queued(state: &mut VmState, id: ConnectionId) -> Queued {
    let high_water = state.settings.high_water;
    let Some(entry) = state.conns.get_mut(id) else {
        return Queued::Closed;
    };
    if entry.conn.output.len() > high_water && entry.phase == ConnectionPhase::Open {
        let _ = entry.conn.flush();
        if entry.conn.failed {
            return Queued::Closed;
        }
    }
    if !entry.conn.output.is_empty() {
        state.mark_dirty(id);
    }
    Queued::Ok
}

/// The error word for a failed connect, when there is one ("refused",
/// "timeout", "reset"); otherwise the caller shows the system message.
pub fn connect_word(e: &std::io::Error) -> Option<&'static str> {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Some("refused"),
        std::io::ErrorKind::TimedOut => Some("timeout"),
        std::io::ErrorKind::ConnectionReset => Some("reset"),
        _ => None,
    }
}
