//! `lunet.ws`: WebSocket (RFC 6455) on a lunet connection; frames are
//! decoded and written in Rust (`core::proto::websocket`), `ws.lua` is the
//! Lua half.
//!
//! Protocol:
//! 1. A server's handler calls `lunet.ws.upgrade(req, res)`: `ws_upgrade`
//!    checks the request and answers 101 through the request's exchange
//!    (`http::upgrade`); the HTTP loop lets the connection go when the
//!    handler returns. A client's `lunet.ws.connect(url)` connects, writes
//!    the upgrade request (`ws_request`, a random key) and checks the
//!    answer (`ws_accept`); bytes after it stay buffered for the frames.
//! 2. Each side has a [`WsState`]: the message decoder of its role (a
//!    server reads masked frames, a client unmasked ones), the close
//!    handshake, and a generator for the masks a client writes.
//! 3. `ws_recv` takes whole frames from the buffer: a ping is answered
//!    with a pong, a pong is dropped, fragments are joined; it returns a
//!    message, `false` to wait (a `Fill` read is parked, as the HTTP fast
//!    paths do), the peer's close (answered with a close if we had not sent
//!    one), or a broken rule: a close with its code (1002, 1007, 1009) is
//!    sent and the error returned.
//! 4. `ws_send` writes one frame; `ws_close` writes a close frame once.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use lunet_core::proto::http::{self as http_proto, Method, Progress};
use lunet_core::proto::websocket::{self, Limits, Message, MessageDecoder, Opcode, Role};
use mlua::{Lua, Table, UserData, UserDataRefMut, Value};

use crate::api::{admit, queued, Queued};
use crate::ids::ConnectionId;
use crate::read::{self, ReadOutcome, ReadRequest};
use crate::state::{with_state, ConnEntry, ConnectionPhase, VmState};

/// One WebSocket end (step 2).
pub struct WsState {
    role: Role,
    decoder: MessageDecoder,
    close_sent: bool,
    close_received: bool,
    /// A broken rule ended it: every call returns this.
    failed: Option<String>,
    random: u64,
}

impl UserData for WsState {}

impl WsState {
    fn new(role: Role, limits: Limits) -> WsState {
        // A random seed from the standard library's hasher keys (random
        // per process and per RandomState).
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(&hasher as *const _ as usize);
        WsState {
            role,
            decoder: MessageDecoder::new(role, limits),
            close_sent: false,
            close_received: false,
            failed: None,
            random: hasher.finish() | 1,
        }
    }

    /// xorshift64*: masks need to be unpredictable to the peer's
    /// intermediaries, not cryptographic (RFC 6455 10.3).
    fn next_random(&mut self) -> u64 {
        self.random ^= self.random >> 12;
        self.random ^= self.random << 25;
        self.random ^= self.random >> 27;
        self.random.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The mask of the next frame: a client masks, a server does not.
    fn mask(&mut self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(|| (self.next_random() as u32).to_le_bytes())
    }
}

/// What `ws_recv` found.
enum Received {
    Message(Message),
    Wait(ReadRequest),
    Failed(String),
}

/// Step 3, inside the state's borrow.
fn receive(entry: &mut ConnEntry, ws: &mut WsState) -> Received {
    loop {
        if let Some(error) = &ws.failed {
            return Received::Failed(error.clone());
        }
        if ws.close_received {
            return Received::Failed("closed".into());
        }
        match ws.decoder.decode(entry.conn.input.as_slice()) {
            Ok(Progress::Done(message, used)) => {
                entry.conn.input.consume(used);
                match message {
                    None => continue,
                    Some(Message::Ping(payload)) => {
                        if !ws.close_sent {
                            let mask = ws.mask();
                            entry.conn.output.append(|out| {
                                websocket::write_frame(out, true, Opcode::Pong, &payload, mask)
                            });
                        }
                    }
                    Some(Message::Pong(_)) => {}
                    Some(Message::Close(close)) => {
                        ws.close_received = true;
                        if !ws.close_sent {
                            ws.close_sent = true;
                            let code = close.as_ref().map_or(1000, |(code, _)| *code);
                            let mask = ws.mask();
                            entry
                                .conn
                                .output
                                .append(|out| websocket::write_close(out, code, "", mask));
                        }
                        return Received::Message(Message::Close(close));
                    }
                    Some(message) => return Received::Message(message),
                }
            }
            Ok(Progress::NeedMore { at_least }) => {
                let request = ReadRequest::Fill { at_least };
                match read::try_read(entry, &request) {
                    ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => {}
                    ReadOutcome::Wait => return Received::Wait(request),
                    ReadOutcome::Failed { err, .. } => {
                        ws.failed = Some(err.to_string());
                        return Received::Failed(err.to_string());
                    }
                }
            }
            Err(error) => {
                let reason = error.to_string();
                if !ws.close_sent {
                    ws.close_sent = true;
                    let mask = ws.mask();
                    entry.conn.output.append(|out| {
                        websocket::write_close(out, error.close_code(), &reason, mask)
                    });
                }
                tracing::info!(target: "lunet::ws", "closing with {}: {reason}", error.close_code());
                ws.failed = Some(reason.clone());
                return Received::Failed(reason);
            }
        }
    }
}

/// Runs `f` on connection `id`'s entry when it is open; marks it for the
/// flush if `f` wrote.
fn on_open<R>(
    state: &mut VmState,
    id: ConnectionId,
    f: impl FnOnce(&mut ConnEntry) -> R,
) -> Option<R> {
    let entry = state.conns.get_mut(id)?;
    if entry.phase != ConnectionPhase::Open {
        return None;
    }
    let before = entry.conn.output.len();
    let result = f(entry);
    if entry.conn.output.len() != before {
        state.mark_dirty(id);
    }
    Some(result)
}

fn queued_values(step: Option<Queued>) -> (Value, Option<String>, Option<&'static str>) {
    match step {
        Some(Queued::Ok) => (Value::Boolean(true), None, None),
        Some(Queued::Wait) => (Value::Boolean(false), None, None),
        Some(Queued::Overloaded) => (Value::Nil, Some("overloaded".into()), None),
        Some(Queued::Closed) | None => (Value::Nil, Some("closed".into()), None),
    }
}

fn misuse_values(message: &str) -> (Value, Option<String>, Option<&'static str>) {
    (Value::Nil, Some(message.to_string()), Some("lunet:misuse"))
}

/// Reads `{max_frame =, max_message =}`.
fn limits(options: &Option<Table>) -> mlua::Result<Limits> {
    let mut limits = Limits::default();
    if let Some(options) = options {
        for (key, field) in [
            ("max_frame", &mut limits.max_frame),
            ("max_message", &mut limits.max_message),
        ] {
            match options.raw_get::<Value>(key)? {
                Value::Nil => {}
                Value::Integer(n) if n > 0 => *field = n as u64,
                Value::Number(f) if f >= 1.0 && f.is_finite() => *field = f as u64,
                _ => {
                    return Err(mlua::Error::runtime(format!(
                        "lunet.ws: option {key} must be a positive number"
                    )))
                }
            }
        }
    }
    Ok(limits)
}

/// Puts the WebSocket functions on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "ws_state",
        lua.create_function(|_, (client, options): (bool, Option<Table>)| {
            let role = if client { Role::Client } else { Role::Server };
            Ok(WsState::new(role, limits(&options)?))
        })?,
    )?;

    // `ws_upgrade(conn, sequence, protocol)` → true | nil, err.
    core.set(
        "ws_upgrade",
        lua.create_function(
            |lua, (id, sequence, protocol): (i64, i64, Option<String>)| {
                if let Some(protocol) = &protocol {
                    if !protocol.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                        return Ok((
                            None,
                            Some("lunet.ws.upgrade: protocol must be a token".into()),
                        ));
                    }
                }
                let id = ConnectionId::from_lua_integer(id);
                let result = with_state(lua, |state| {
                    crate::http::with_exchange(state, id, |entry, exchange, _| {
                        if exchange.check(sequence).is_err() {
                            return (
                                Err("the request is finished (its handler returned)".to_string()),
                                None,
                            );
                        }
                        (
                            crate::http::upgrade(entry, exchange, protocol.as_deref()),
                            None,
                        )
                    })
                })?;
                Ok(match result {
                    Some(Ok(())) => (Some(true), None),
                    Some(Err(error)) => (None, Some(error)),
                    None => (None, Some("not an HTTP request of lunet.http".into())),
                })
            },
        )?,
    )?;

    core.set(
        "ws_recv",
        lua.create_function(
            |lua, (id, mut ws, wait_error): (i64, UserDataRefMut<WsState>, Option<mlua::LuaString>)| {
                let id = ConnectionId::from_lua_integer(id);
                let received = match wait_error {
                    Some(word) => {
                        let word = word.to_string_lossy();
                        ws.failed = Some(word.clone());
                        Received::Failed(word)
                    }
                    None => with_state(lua, |state| {
                        let received = on_open(state, id, |entry| receive(entry, &mut ws))
                            .unwrap_or_else(|| Received::Failed("closed".into()));
                        if let Received::Wait(request) = &received {
                            state.pending_read = Some((id, request.clone()));
                        }
                        received
                    })?,
                };
                let values = match received {
                    Received::Message(Message::Text(text)) => vec![
                        Value::String(lua.create_string(&text)?),
                        Value::String(lua.create_string("text")?),
                    ],
                    Received::Message(Message::Binary(data)) => vec![
                        Value::String(lua.create_string(&data)?),
                        Value::String(lua.create_string("binary")?),
                    ],
                    Received::Message(Message::Close(close)) => {
                        let (code, reason) = close.unwrap_or((1005, String::new()));
                        vec![
                            Value::String(lua.create_string(&reason)?),
                            Value::String(lua.create_string("close")?),
                            Value::Integer(i64::from(code)),
                        ]
                    }
                    // Pings and pongs are handled in `receive`.
                    Received::Message(_) => vec![Value::Nil, Value::String(lua.create_string("closed")?)],
                    Received::Wait(_) => vec![Value::Boolean(false)],
                    Received::Failed(error) => {
                        vec![Value::Nil, Value::String(lua.create_string(&error)?)]
                    }
                };
                Ok(mlua::MultiValue::from_vec(values))
            },
        )?,
    )?;

    // `ws_send(conn, ws, data, kind)` → true | false (wait) | nil, err |
    // nil, message, MISUSE.
    core.set(
        "ws_send",
        lua.create_function(
            |lua,
             (id, mut ws, data, kind): (
                i64,
                UserDataRefMut<WsState>,
                mlua::LuaString,
                Option<String>,
            )| {
                let opcode =
                    match kind.as_deref() {
                        None | Some("text") => Opcode::Text,
                        Some("binary") => Opcode::Binary,
                        Some("ping") => Opcode::Ping,
                        Some("pong") => Opcode::Pong,
                        Some(_) => return Ok(misuse_values(
                            "ws:send: the kind must be \"text\", \"binary\", \"ping\" or \"pong\"",
                        )),
                    };
                let data = data.as_bytes();
                if opcode == Opcode::Text && std::str::from_utf8(&data).is_err() {
                    return Ok(misuse_values(
                        "ws:send: a text message must be UTF-8 (send it as \"binary\")",
                    ));
                }
                if opcode.is_control() && data.len() > 125 {
                    return Ok(misuse_values(
                        "ws:send: a ping or pong carries at most 125 bytes",
                    ));
                }
                if ws.close_sent || ws.failed.is_some() {
                    return Ok((Value::Nil, Some("closed".into()), None));
                }
                let id = ConnectionId::from_lua_integer(id);
                let mask = ws.mask();
                let step = with_state(lua, |state| {
                    if let Some(refused) = admit(state, id, data.len()) {
                        return Some(refused);
                    }
                    on_open(state, id, |entry| {
                        entry
                            .conn
                            .output
                            .append(|out| websocket::write_frame(out, true, opcode, &data, mask));
                    })?;
                    Some(queued(state, id))
                })?;
                Ok(queued_values(step))
            },
        )?,
    )?;

    // `ws_close(conn, ws, code, reason)` → true (sent now) | false (sent
    // before) | nil, message, MISUSE.
    core.set(
        "ws_close",
        lua.create_function(
            |lua,
             (id, mut ws, code, reason): (
                i64,
                UserDataRefMut<WsState>,
                Option<i64>,
                Option<String>,
            )| {
                let code = code.unwrap_or(1000);
                let valid = u16::try_from(code).is_ok_and(websocket::valid_close_code);
                if !valid {
                    return Ok(misuse_values(
                        "ws:close: the code must be 1000-1003, 1007-1014 or 3000-4999",
                    ));
                }
                let reason = reason.unwrap_or_default();
                if reason.len() > 123 {
                    return Ok(misuse_values("ws:close: the reason is at most 123 bytes"));
                }
                if ws.close_sent || ws.failed.is_some() {
                    return Ok((Value::Boolean(false), None, None));
                }
                ws.close_sent = true;
                let id = ConnectionId::from_lua_integer(id);
                let mask = ws.mask();
                with_state(lua, |state| {
                    on_open(state, id, |entry| {
                        entry
                            .conn
                            .output
                            .append(|out| websocket::write_close(out, code as u16, &reason, mask));
                    })
                })?;
                Ok((Value::Boolean(true), None, None))
            },
        )?,
    )?;

    core.set(
        "ws_closed",
        lua.create_function(|_, ws: mlua::UserDataRef<WsState>| {
            Ok(ws.close_received || ws.failed.is_some())
        })?,
    )?;

    // `ws_request(conn, ws, host, target, protocols)` → the key | nil, err:
    // writes a client's upgrade request.
    core.set(
        "ws_request",
        lua.create_function(
            |lua,
             (id, mut ws, host, target, protocols): (
                i64,
                UserDataRefMut<WsState>,
                String,
                String,
                Option<String>,
            )| {
                let mut random = [0u8; 16];
                random[..8].copy_from_slice(&ws.next_random().to_le_bytes());
                random[8..].copy_from_slice(&ws.next_random().to_le_bytes());
                let key = websocket::client_key(random);
                let mut request = Vec::new();
                if let Err(error) =
                    websocket::write_client_request(&mut request, &host, &target, &key)
                {
                    return Ok((None, Some(format!("lunet.ws.connect: {error}"))));
                }
                if let Some(protocols) = protocols {
                    // Before the head's final empty line.
                    request.truncate(request.len() - 2);
                    if http_proto::response::write_header(
                        &mut request,
                        b"Sec-WebSocket-Protocol",
                        protocols.as_bytes(),
                    )
                    .is_err()
                    {
                        return Ok((None, Some("lunet.ws.connect: invalid protocol list".into())));
                    }
                    request.extend_from_slice(b"\r\n");
                }
                let id = ConnectionId::from_lua_integer(id);
                let written = with_state(lua, |state| {
                    on_open(state, id, |entry| entry.conn.output.extend(&request))
                })?;
                Ok(match written {
                    Some(()) => (Some(key), None),
                    None => (None, Some("closed".to_string())),
                })
            },
        )?,
    )?;

    // `ws_accept(conn, key [, wait_error])` → true, protocol | false (wait)
    // | nil, err: the server's answer to the upgrade request.
    core.set(
        "ws_accept",
        lua.create_function(
            |lua, (id, key, wait_error): (i64, String, Option<mlua::LuaString>)| {
                if let Some(word) = wait_error {
                    return Ok((Value::Nil, Some(word.to_string_lossy())));
                }
                let id = ConnectionId::from_lua_integer(id);
                let checked = with_state(lua, |state| {
                    let Some(entry) = state.conns.get_mut(id) else {
                        return Err("closed".to_string());
                    };
                    loop {
                        let limits = http_proto::Limits::default();
                        let input = entry.conn.input.as_slice();
                        match http_proto::parse_response(input, &limits, Method::Get) {
                            Ok(Progress::Done(response, used)) => {
                                let accepted = websocket::check_accept(&response, &key)
                                    .map(|()| {
                                        response
                                            .header("sec-websocket-protocol")
                                            .map(|p| String::from_utf8_lossy(p).into_owned())
                                    })
                                    .map_err(|e| e.to_string());
                                entry.conn.input.consume(used);
                                return accepted.map(Some);
                            }
                            Ok(Progress::NeedMore { at_least }) => {
                                let request = ReadRequest::Fill { at_least };
                                match read::try_read(entry, &request) {
                                    ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => {}
                                    ReadOutcome::Wait => {
                                        state.pending_read = Some((id, request));
                                        return Ok(None);
                                    }
                                    ReadOutcome::Failed { err, .. } => return Err(err.to_string()),
                                }
                            }
                            Err(error) => return Err(format!("websocket handshake: {error}")),
                        }
                    }
                })?;
                Ok(match checked {
                    Ok(Some(protocol)) => (Value::Boolean(true), protocol),
                    Ok(None) => (Value::Boolean(false), None),
                    Err(error) => (Value::Nil, Some(error)),
                })
            },
        )?,
    )?;
    Ok(())
}
