//! The socket methods' fast paths: read, close, peer, settimeout,
//! connect, and the note a collected socket object leaves (write is in
//! `write.rs`).
//!
//! `core.read(conn, kind [, size [, delim]])`, the fast path of every
//! byte read (`readline`, `readn`, `readuntil`, `readsome`, `handshake`
//! and the batteries' fills), is a C function on the raw Lua stack (see
//! `raw.rs`): it runs once per request of a line server, and mlua's
//! callback machinery cost more than the read. It returns the data (or
//! `true` for a handshake or a fill), `false` (must wait: the request is
//! parked, the wrapper yields), or `nil, err [, partial]`. A read that
//! waited is resumed with `true` once its answer is buffered, and the
//! wrapper calls `core.read` again: the answer goes from the connection's
//! buffer to a Lua string with one copy, made in the session's own call.

use std::borrow::Cow;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lunet_core::connection::Connection;
use lunet_core::Runtime;
use mlua::{ffi, FromLua, Lua, Table, Value};

use crate::ids::ConnectionId;
use crate::raw::{self, raise};
use crate::read::{self, FastRead, Shape, Taken};
use crate::state::{with_state, with_state_of, ConnEntry, ConnectionPhase, VmState};

thread_local! {
    /// The bytes of `core.read`'s answer, kept between calls. Taken out of
    /// the cell for a call: a finalizer that reads during the string's
    /// allocation finds it empty and uses a fresh one; a memory error
    /// while the string is made leaks it once.
    static READ_BYTES: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// What the Rust half of `core.read` found (the data, or the partial data
/// of a failure, is in the kept bytes).
enum ReadStep {
    Data,
    True,
    Wait,
    Failed { partial: bool },
    Misuse,
}

/// `core.read(conn, kind [, size [, delim]])` (see the module header).
unsafe extern "C-unwind" fn read_bytes(state: *mut ffi::lua_State) -> c_int {
    let vm = raw::identity(state);
    let mut is_number = 0;
    let id = ffi::lua_tointegerx(state, 1, &mut is_number);
    if is_number == 0 {
        return raise(
            state,
            c"lunet: read of something that is not a socket".as_ptr(),
        );
    }
    let kind = ffi::lua_tointegerx(state, 2, &mut is_number);
    if is_number == 0 {
        return raise(state, c"lunet: unknown read kind".as_ptr());
    }
    let size = match ffi::lua_type(state, 3) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => None,
        _ => {
            let size = ffi::lua_tointegerx(state, 3, &mut is_number);
            if is_number == 0 {
                return raise(state, c"lunet: a read's size must be an integer".as_ptr());
            }
            Some(size)
        }
    };
    let delim = match ffi::lua_type(state, 4) {
        ffi::LUA_TSTRING => {
            let mut len = 0;
            let data = ffi::lua_tolstring(state, 4, &mut len);
            // SAFETY: the string stays on the stack (alive) for the call.
            Some(std::slice::from_raw_parts(data.cast::<u8>(), len))
        }
        _ => None,
    };
    let mut bytes = READ_BYTES.take();
    let (step, text): (ReadStep, Cow<'static, str>) = catch_unwind(AssertUnwindSafe(|| {
        let id = ConnectionId::from_lua_integer(id);
        let found = with_state_of(vm, |vm_state| {
            read::fast_read(vm_state, id, kind, size, delim, &mut bytes)
        });
        match found {
            Ok(Ok(FastRead::Taken(Taken::Data))) => (ReadStep::Data, Cow::Borrowed("")),
            Ok(Ok(FastRead::Taken(Taken::Parsed(Shape::Handshake) | Taken::Buffered))) => {
                (ReadStep::True, Cow::Borrowed(""))
            }
            Ok(Ok(FastRead::Taken(Taken::Parsed(_)))) => (
                ReadStep::Misuse,
                Cow::Borrowed("lunet: core.read makes no values (core.read_value does)"),
            ),
            Ok(Ok(FastRead::Taken(Taken::Failed { err, partial }))) => {
                (ReadStep::Failed { partial }, err)
            }
            Ok(Ok(FastRead::Wait)) => (ReadStep::Wait, Cow::Borrowed("")),
            Ok(Ok(FastRead::Closed)) => {
                (ReadStep::Failed { partial: false }, Cow::Borrowed("closed"))
            }
            Ok(Err(misuse)) => (ReadStep::Misuse, Cow::Owned(misuse.to_string())),
            Err(_) => (
                ReadStep::Misuse,
                Cow::Borrowed(raw::STATE_UNAVAILABLE.to_str().unwrap_or("lunet")),
            ),
        }
    }))
    .unwrap_or((
        ReadStep::Misuse,
        Cow::Borrowed("lunet: a socket read failed"),
    ));
    // From here on the Lua API may raise (a memory error): `bytes` and
    // `text` leak then, once; nothing else with a destructor is live.
    let bytes = ManuallyDrop::new(bytes);
    let text = ManuallyDrop::new(text);
    let results = match step {
        ReadStep::Data => {
            ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
            1
        }
        ReadStep::True | ReadStep::Wait => {
            ffi::lua_pushboolean(state, matches!(step, ReadStep::True) as c_int);
            1
        }
        ReadStep::Failed { partial } => {
            ffi::lua_pushnil(state);
            ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
            if partial {
                ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
                3
            } else {
                2
            }
        }
        ReadStep::Misuse => {
            ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
            -1
        }
    };
    drop(ManuallyDrop::into_inner(text));
    let bytes = ManuallyDrop::into_inner(bytes);
    if bytes.capacity() <= read::KEEP_BYTES {
        READ_BYTES.set(bytes);
    }
    if results < 0 {
        ffi::lua_error(state);
    }
    results
}

pub fn build(lua: &Lua, runtime: &Runtime, core: &Table) -> mlua::Result<()> {
    core.raw_set("read", raw::closure(lua, read_bytes)?)?;
    // The reads whose answer is a Lua value made from what was read
    // (`sock:readreply`), through mlua.
    let kept = Cell::new(Vec::new());
    core.set(
        "read_value",
        lua.create_function(move |lua, (id, kind, size): (i64, i64, Option<i64>)| {
            let id = ConnectionId::from_lua_integer(id);
            let mut bytes = kept.take();
            let step = with_state(lua, |state| {
                read::fast_read(state, id, kind, size, None, &mut bytes)
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
        })?,
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
