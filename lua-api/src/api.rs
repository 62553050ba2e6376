//! The Rust half of the `lunet` module: the fast paths the Lua wrappers in
//! `prelude.lua` call. None of these yields; a wrapper yields when one says
//! `false` (must wait).

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use lunet_core::connection::Connection;
use lunet_core::{now_ms, Runtime, Service};
use mlua::{Function, Lua, MultiValue, Table, Value, Variadic};

use crate::protocol::ReadKind;
use crate::slab::index_of;
use crate::state::{try_read, ConnEntry, Phase, ReadOutcome, ReadRequest, Spawn, State};

/// What the callbacks share with the scheduler.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<Mutex<State>>,
    pub runtime: Runtime,
    pub service: Arc<Mutex<Option<std::sync::Weak<Service>>>>,
    /// Ids of sockets whose Lua object was collected: closed after the slice.
    pub collected: Arc<Mutex<Vec<u64>>>,
    /// `collected` is not empty (checked without the lock after every slice).
    pub has_collected: Arc<std::sync::atomic::AtomicBool>,
    /// The session being resumed now (set by the scheduler, read by
    /// callbacks that need to know who calls).
    pub current: Arc<std::sync::atomic::AtomicU64>,
    /// Sequence of outgoing calls (see `services::call_token`).
    pub next_call: Arc<std::sync::atomic::AtomicU32>,
}

impl Shared {
    /// Borrows the state from inside a callback. A re-entrant call (from a
    /// `__gc` finalizer that ran while the state was borrowed) is an error,
    /// not a deadlock.
    pub fn lock(&self) -> mlua::Result<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(guard) => Ok(guard),
            Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(TryLockError::WouldBlock) => Err(mlua::Error::runtime(
                "lunet: re-entrant call into the socket layer (from a __gc finalizer?)",
            )),
        }
    }

    pub fn service(&self) -> Option<Arc<Service>> {
        self.service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|w| w.upgrade())
    }
}

/// Reads the answer of a finished read out of the buffer as a Lua string.
pub fn take_read(
    lua: &Lua,
    entry: &mut ConnEntry,
    outcome: ReadOutcome,
) -> mlua::Result<(Value, Option<&'static str>, Option<mlua::LuaString>)> {
    match outcome {
        ReadOutcome::Ready { end, consume } => {
            let data = lua.create_string(&entry.conn.input.as_slice()[..end])?;
            entry.conn.input.consume(consume);
            Ok((Value::String(data), None, None))
        }
        ReadOutcome::Failed { err, partial } => {
            let partial = if partial {
                let data = lua.create_string(entry.conn.input.as_slice())?;
                let len = entry.conn.input.len();
                entry.conn.input.consume(len);
                Some(data)
            } else {
                None
            };
            Ok((Value::Nil, Some(err), partial))
        }
        ReadOutcome::Wait => Ok((Value::Boolean(false), None, None)),
    }
}

/// Validates the arguments a read wrapper passed.
pub fn read_request(
    kind: i64,
    arg: Option<i64>,
    delim: Option<mlua::LuaString>,
    max_line: usize,
) -> mlua::Result<ReadRequest> {
    let size = |what: &str| -> mlua::Result<usize> {
        match arg {
            None => Ok(max_line),
            Some(n) if n > 0 => Ok(n as usize),
            Some(n) => Err(mlua::Error::runtime(format!(
                "{what}: size must be positive, got {n}"
            ))),
        }
    };
    let Some(kind) = ReadKind::from_code(kind) else {
        return Err(mlua::Error::runtime("lunet: unknown read kind"));
    };
    Ok(match kind {
        ReadKind::Line => ReadRequest::Line {
            max: size("sock:readline")?,
        },
        ReadKind::Exact => match arg {
            Some(n) if n >= 0 => ReadRequest::Exact { n: n as usize },
            _ => {
                return Err(mlua::Error::runtime(
                    "sock:readn: expected a byte count >= 0",
                ))
            }
        },
        ReadKind::Until => {
            let delim = delim
                .map(|d| d.as_bytes().to_vec())
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    mlua::Error::runtime("sock:readuntil: expected a non-empty delimiter")
                })?;
            ReadRequest::Until {
                delim,
                max: size("sock:readuntil")?,
            }
        }
        ReadKind::Some => ReadRequest::Some {
            max: match arg {
                None => 64 * 1024,
                Some(_) => size("sock:readsome")?,
            },
        },
    })
}

fn append_value(out: &mut lunet_core::buffer::Buffer, value: &Value, n: usize) -> mlua::Result<()> {
    match value {
        Value::String(s) => out.extend(&s.as_bytes()),
        Value::Integer(i) => out.extend(i.to_string().as_bytes()),
        Value::Number(f) => out.extend(format_number(*f).as_bytes()),
        other => {
            return Err(mlua::Error::runtime(format!(
                "sock:write: argument #{n} must be a string or a number, got {}",
                other.type_name()
            )))
        }
    }
    Ok(())
}

fn format_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Builds the table of Rust functions handed to `prelude.lua`.
pub fn build(lua: &Lua, shared: &Shared) -> mlua::Result<Table> {
    let core = lua.create_table()?;
    crate::protocol::install(lua, &core)?;

    let sh = shared.clone();
    core.set(
        "read",
        lua.create_function(
            move |lua, (id, kind, arg, delim): (i64, i64, Option<i64>, Option<mlua::LuaString>)| {
                let mut state = sh.lock()?;
                let max_line = state.settings.max_line;
                let request = read_request(kind, arg, delim, max_line)?;
                let Some(entry) = state.conns.get_mut(id as u64) else {
                    return Ok((Value::Nil, Some("closed"), None));
                };
                if entry.phase == Phase::Closing {
                    return Ok((Value::Nil, Some("closed"), None));
                }
                if entry.reader.is_some() {
                    return Err(mlua::Error::runtime(
                        "socket busy reading: another session waits on it",
                    ));
                }
                let outcome = try_read(entry, &request);
                if matches!(outcome, ReadOutcome::Wait) {
                    // The wrapper yields next; the scheduler takes it from here.
                    state.pending_read = Some((id as u64, request));
                    return Ok((Value::Boolean(false), None, None));
                }
                take_read(lua, entry, outcome)
            },
        )?,
    )?;

    let sh = shared.clone();
    core.set(
        "write",
        lua.create_function(move |_, (id, first, rest): (i64, Value, Variadic<Value>)| {
            let mut state = sh.lock()?;
            let high_water = state.settings.high_water;
            let id = id as u64;
            let Some(entry) = state.conns.get_mut(id) else {
                return Ok((Value::Nil, Some("closed")));
            };
            if entry.phase == Phase::Closing || entry.conn.failed {
                return Ok((Value::Nil, Some("closed")));
            }
            append_value(&mut entry.conn.output, &first, 1)?;
            for (i, value) in rest.iter().enumerate() {
                append_value(&mut entry.conn.output, value, i + 2)?;
            }
            if entry.conn.output.len() > high_water && entry.phase == Phase::Open {
                // Try once now; wait only if the peer really is slow.
                let _ = entry.conn.flush();
                if entry.conn.failed {
                    return Ok((Value::Nil, Some("closed")));
                }
                if entry.conn.output.len() > high_water {
                    state.mark_dirty(id);
                    return Ok((Value::Boolean(false), None));
                }
            }
            if !entry.conn.output.is_empty() {
                state.mark_dirty(id);
            }
            Ok((Value::Boolean(true), None))
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "close",
        lua.create_function(move |_, id: i64| {
            let mut state = sh.lock()?;
            match state.conns.get_mut(id as u64) {
                Some(entry) if entry.phase != Phase::Closing => {
                    entry.phase = Phase::Closing;
                    // The scheduler finishes the close after this slice.
                    state.mark_dirty(id as u64);
                    Ok((true, None))
                }
                _ => Ok((false, Some("closed"))),
            }
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "collected",
        lua.create_function(move |_, id: i64| {
            sh.collected
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id as u64);
            sh.has_collected
                .store(true, std::sync::atomic::Ordering::Release);
            Ok(())
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "peer",
        lua.create_function(move |_, id: i64| {
            let state = sh.lock()?;
            match state.conns.get(id as u64).and_then(|e| e.peer) {
                Some(peer) => Ok((Some(peer.to_string()), None)),
                None => Ok((None, Some("closed"))),
            }
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "settimeout",
        lua.create_function(move |_, (id, ms): (i64, Option<f64>)| {
            let mut state = sh.lock()?;
            if let Some(entry) = state.conns.get_mut(id as u64) {
                entry.timeout_ms = match ms {
                    Some(ms) if ms > 0.0 => ms.ceil() as u64,
                    _ => 0,
                };
            }
            Ok(())
        })?,
    )?;

    let settings = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .settings
        .clone();
    core.set(
        "getenv",
        lua.create_function(move |lua, (key, default): (String, Value)| {
            Ok(match settings.env.get(&key) {
                Some(v) => Value::String(lua.create_string(v)?),
                None => default,
            })
        })?,
    )?;

    core.set("now", lua.create_function(|_, ()| Ok(now_ms() as i64))?)?;

    core.set(
        "log",
        lua.create_function(|_, (level, parts): (String, Variadic<Value>)| {
            let mut message = String::new();
            for part in parts.iter() {
                match part {
                    Value::String(s) => message.push_str(&s.to_string_lossy()),
                    other => message.push_str(&format!("{other:?}")),
                }
            }
            match level.as_str() {
                "error" => tracing::error!(target: "lua", "{message}"),
                "warn" => tracing::warn!(target: "lua", "{message}"),
                "debug" => tracing::debug!(target: "lua", "{message}"),
                "trace" => tracing::trace!(target: "lua", "{message}"),
                _ => tracing::info!(target: "lua", "{message}"),
            }
            Ok(())
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "listen",
        lua.create_function(move |_, addr: String| {
            let service = sh
                .service()
                .ok_or_else(|| mlua::Error::runtime("lunet.listen: no service"))?;
            let key = {
                let mut state = sh.lock()?;
                let count = state.listen_calls.entry(addr.clone()).or_insert(0);
                *count += 1;
                format!("{addr}#{count}")
            };
            match sh.runtime.listen(&addr, &key, &service) {
                Ok((id, bound)) => Ok((id, bound.to_string())),
                Err(e) => Err(mlua::Error::runtime(format!("lunet.listen {addr}: {e}"))),
            }
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "connect",
        lua.create_function(
            move |_, (addr, timeout, bind): (String, Option<f64>, Option<String>)| {
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
                let service = sh
                    .service()
                    .ok_or_else(|| mlua::Error::runtime("lunet.connect: no service"))?;
                let mut state = sh.lock()?;
                let id = state.conns.insert(ConnEntry {
                    conn: Connection::new(stream),
                    phase: Phase::Connecting,
                    peer: Some(parsed),
                    count: None,
                    timeout_ms: timeout.filter(|t| *t > 0.0).map_or(0, |t| t.ceil() as u64),
                    reader: None,
                    writers: Vec::new(),
                    dirty: false,
                    draining: false,
                    linger_deadline: None,
                });
                let entry = state.conns.get_mut(id).expect("just inserted");
                let token = lunet_core::reactor::token(service.index(), index_of(id));
                if let Err(e) = sh.runtime.registry().register(
                    &mut entry.conn.stream,
                    token,
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                ) {
                    state.conns.remove(id);
                    return Ok((None, Some(format!("cannot register socket: {e}"))));
                }
                Ok((Some(id as i64), None))
            },
        )?,
    )?;

    let sh = shared.clone();
    core.set(
        "fork",
        lua.create_function(move |_, (function, args): (Function, MultiValue)| {
            let mut state = sh.lock()?;
            state.spawns.push(Spawn { function, args });
            Ok(())
        })?,
    )?;

    core.set("shared_dict", lua.create_function(crate::dict::open)?)?;
    crate::services::build(lua, shared, &core)?;

    Ok(core)
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
