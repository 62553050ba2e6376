//! The cluster service's read path: the next NATS server operation,
//! parsed by `proto::nats` straight from the connection's input buffer (as
//! `lunet.ws` binds its decoder), so that `node.lua` makes one Rust call
//! per message instead of a line read, a match and a payload read.
//!
//! `read(conn, max_payload [, wait_error])` follows `until_read`'s
//! protocol (prelude.lua): `false` while it must wait for more bytes, then
//! one of
//! - `"m", sid, subject, reply|nil, payload, status|nil` (MSG or HMSG; the
//!   status of an HMSG's `NATS/1.0 503` line as a string, its headers left
//!   out),
//! - `"info", json`, `"ping"`, `"pong"`, `"ok"`, `"err", text`,
//! - `"taken", node`: a group call this node forwarded was taken by `node`
//!   (watch for its heartbeats),
//! - `nil, why` (the connection ended, or the server broke the protocol).
//!
//! The answers of forwarded calls never reach Lua: they are posted to
//! their callers here (`forward.rs`) and the next operation is read.

use lunet_core::proto::{nats, Progress};
use lunet_core::Runtime;
use mlua::{IntoLua, Lua, LuaString, MultiValue, Value};

use super::forward::{self, Handled};

use crate::ids::ConnectionId;
use crate::read::{self, ReadOutcome, ReadRequest};
use crate::state::{with_state, ConnEntry, ConnectionPhase};

/// The longest control line taken from the server (an INFO with many
/// URLs is long; the official clients allow 4 KiB, node.lua's handshake
/// 64 KiB).
const MAX_CONTROL_LINE: usize = 64 * 1024;

/// One server operation, copied out of the buffer: Lua strings are made
/// of it once the state is no longer borrowed (`state.rs`).
enum Operation {
    Msg {
        sid: u64,
        subject: Vec<u8>,
        reply: Option<Vec<u8>>,
        payload: Vec<u8>,
        status: Option<u16>,
    },
    Info(Vec<u8>),
    Ping,
    Pong,
    Ok,
    Err(Vec<u8>),
}

impl From<nats::ServerOp<'_>> for Operation {
    fn from(op: nats::ServerOp<'_>) -> Operation {
        match op {
            nats::ServerOp::Msg(msg) => Operation::Msg {
                sid: msg.sid,
                subject: msg.subject.to_vec(),
                reply: msg.reply.map(<[u8]>::to_vec),
                payload: msg.payload.to_vec(),
                status: msg.headers.and_then(|headers| headers.status),
            },
            nats::ServerOp::Info(json) => Operation::Info(json.to_vec()),
            nats::ServerOp::Ping => Operation::Ping,
            nats::ServerOp::Pong => Operation::Pong,
            nats::ServerOp::Ok => Operation::Ok,
            nats::ServerOp::Err(text) => Operation::Err(text.to_vec()),
        }
    }
}

enum Next {
    Operation(Operation),
    Wait(ReadRequest),
    Failed(String),
}

/// Inside the state's borrow: parses the front of the input, reading the
/// socket while it needs more.
fn next(entry: &mut ConnEntry, limits: &nats::Limits) -> Next {
    loop {
        match nats::parse_server_op(entry.conn.input.as_slice(), limits) {
            Ok(Progress::Done(op, used)) => {
                let op = Operation::from(op);
                entry.conn.input.consume(used);
                return Next::Operation(op);
            }
            Ok(Progress::NeedMore { at_least }) => {
                let request = ReadRequest::Fill { at_least };
                match read::try_read(entry, &request) {
                    ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => {}
                    ReadOutcome::Wait => return Next::Wait(request),
                    ReadOutcome::Failed { err, .. } => {
                        return Next::Failed(format!("the connection ended: {err}"))
                    }
                }
            }
            Err(e) => return Next::Failed(format!("protocol error: {e}")),
        }
    }
}

/// `read` (see the module's comment).
pub(super) fn read(
    lua: &Lua,
    runtime: &Runtime,
    forwarded: &forward::Shared,
    (id, max_payload, wait_error): (i64, i64, Option<LuaString>),
) -> mlua::Result<MultiValue> {
    if let Some(word) = wait_error {
        let why = format!("the connection ended: {}", word.to_string_lossy());
        return Ok(MultiValue::from_vec(vec![
            Value::Nil,
            Value::String(lua.create_string(&why)?),
        ]));
    }
    let id = ConnectionId::from_lua_integer(id);
    let limits = nats::Limits {
        max_control_line: MAX_CONTROL_LINE,
        max_payload: usize::try_from(max_payload).unwrap_or(0),
    };
    let next = loop {
        let next = with_state(lua, |state| {
            let next = match state.conns.get_mut(id) {
                Some(entry) if entry.phase == ConnectionPhase::Open => next(entry, &limits),
                _ => Next::Failed("the connection ended: closed".to_string()),
            };
            if let Next::Wait(request) = &next {
                state.pending_read = Some((id, request.clone()));
            }
            next
        })?;
        let Next::Operation(Operation::Msg {
            subject,
            payload,
            status,
            ..
        }) = &next
        else {
            break next;
        };
        let (handled, answer) = forward::lock(forwarded).on_message(subject, payload, *status);
        if let Some((caller, kind, answer)) = answer {
            forward::answer_once(lua, runtime, caller, kind, answer)?;
        }
        match handled {
            Handled::NotOurs => break next,
            Handled::Done => {}
            Handled::TakenBy(node) => {
                return Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string("taken")?),
                    Value::String(lua.create_string(&node)?),
                ]))
            }
        }
    };
    let string = |bytes: &[u8]| lua.create_string(bytes).map(Value::String);
    let values = match next {
        Next::Wait(_) => vec![Value::Boolean(false)],
        Next::Failed(why) => vec![Value::Nil, string(why.as_bytes())?],
        Next::Operation(Operation::Msg {
            sid,
            subject,
            reply,
            payload,
            status,
        }) => vec![
            string(b"m")?,
            Value::Integer(sid as i64),
            string(&subject)?,
            match reply {
                Some(reply) => string(&reply)?,
                None => Value::Nil,
            },
            string(&payload)?,
            status.map(|status| status.to_string()).into_lua(lua)?,
        ],
        Next::Operation(Operation::Info(json)) => vec![string(b"info")?, string(&json)?],
        Next::Operation(Operation::Ping) => vec![string(b"ping")?],
        Next::Operation(Operation::Pong) => vec![string(b"pong")?],
        Next::Operation(Operation::Ok) => vec![string(b"ok")?],
        Next::Operation(Operation::Err(text)) => vec![string(b"err")?, string(&text)?],
    };
    Ok(MultiValue::from_vec(values))
}
