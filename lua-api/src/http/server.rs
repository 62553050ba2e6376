//! The server half of `lunet.http` as Lua sees it: the functions the loop
//! and the `req`/`res` methods of `http.lua` call. The work is done in
//! `exchange.rs`; a connection's [`Exchange`] lives in its entry.
//!
//! Protocol of a connection (`serve` in `http.lua`):
//!
//! 1. `core.http_begin(conn, config)` gives the connection its exchange.
//! 2. `next(conn, nil [, wait_error])` ends the previous exchange: it writes the
//!    response if the handler sent none (its status, an empty body) or the
//!    last chunk of a streamed one, closes unless both sides keep the
//!    connection alive, and drops a body the handler did not read. Then it
//!    parses the next request head. It returns `req, res`; `false` when it
//!    must wait (a `Fill` read is parked: the loop yields `OP.READ` and
//!    calls again, with the wait's error if it failed); or nil when the
//!    connection is done: the peer left, a timeout, or a refused request
//!    whose answer (400, 408, 413, 414, 417, 431, 501, 505) is written.
//! 3. The handler runs with `req` and `res`. `req[1]`, `req[2]` are the
//!    connection and the request's number, `res[1]`, `res[2]` the number
//!    and the connection: a call on a finished request raises.
//! 4. `req:body()` (`core.http_body`) answers `Expect: 100-continue` with
//!    `100 Continue` first, then decodes the body (Content-Length or
//!    chunked, bounded by `max_body`), waiting as in step 2.
//! 5. `res:status`, `res:header` build the head in the exchange; `send`
//!    and `core.http_write` write it with the body or a chunk into the
//!    connection's output, flushed when the slice ends. A head has a
//!    `Date`, a `Content-Length` (or chunked framing), the default
//!    `Content-Type` unless the handler set one, and `Connection: close`
//!    when the connection ends after it. HEAD gets the head only.
//! 6. A handler error: `core.http_fail` answers 500 if nothing was sent,
//!    logs the error, and the loop ends (the connection closes).
//!
//! The connection's timeout is set for each wait: the keep-alive idle
//! timeout while no byte of the next request has arrived, `timeout` for
//! the rest of a head, a body, or a slow reader of the response.
//!
//! `next` and `send`, which every request goes through, are C functions on
//! the raw Lua stack (as `json.rs`): the request table is built without
//! mlua's per-value handles, and its `headers` and `query` tables only when
//! the handler reads them (`fields`). Their Rust frames hold only plain data, since
//! a failed allocation raises by `longjmp` through them.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use lunet_core::proto::http::response as writer;
use mlua::{ffi, Function, Lua, Table, UserData, Value};

use super::exchange::{self, Exchange, Misuse, Next, RequestView, ServerConfig};
use super::value_bytes;
use crate::api::{admit, queued, Queued};
use crate::caps::{self, Capability};
use crate::ids::ConnectionId;
use crate::state::{with_own_state, with_state, ConnectionPhase, VmState};

/// A listener's configuration as a Lua value.
pub struct Config(Arc<ServerConfig>);

impl UserData for Config {}

fn connection(id: i64) -> ConnectionId {
    ConnectionId::from_lua_integer(id)
}

/// The third value of a call's answer that says "misuse: raise the
/// message" (prelude.lua's lane calls use the same word).
const MISUSE: &str = "lunet:misuse";

/// `nil, message, MISUSE`.
fn misuse_values(lua: &Lua, message: String) -> (Value, Option<String>, Option<mlua::LuaString>) {
    (Value::Nil, Some(message), lua.create_string(MISUSE).ok())
}

/// `true`, `false` (wait for room, then write again), `nil, "overloaded"`
/// or `nil, "closed"`.
fn queued_values(step: Queued) -> (Value, Option<String>, Option<mlua::LuaString>) {
    match step {
        Queued::Ok => (Value::Boolean(true), None, None),
        Queued::Wait => (Value::Boolean(false), None, None),
        Queued::Overloaded => (Value::Nil, Some("overloaded".to_string()), None),
        Queued::Closed => (Value::Nil, Some("closed".to_string()), None),
    }
}

/// Writes a piece of the response of request `sequence` on `id` with
/// `write`, about `bytes` long, once the socket's write bound admits it
/// (`api::socket::admit`); then the usual accounting of queued output.
fn respond(
    state: &mut VmState,
    id: ConnectionId,
    sequence: i64,
    bytes: usize,
    write: impl FnOnce(&mut Exchange, &mut Vec<u8>, bool),
) -> Result<Queued, Misuse> {
    if let Some(refused) = admit(state, id, bytes) {
        return Ok(refused);
    }
    let wrote = exchange::with_exchange(state, id, |entry, exchange, shutting_down| {
        let checked = exchange.check(sequence).and_then(|()| exchange.can_send());
        if let Err(error) = checked {
            return (Err(error), None);
        }
        if entry.phase != ConnectionPhase::Open || entry.conn.failed {
            return (Ok(false), None);
        }
        entry
            .conn
            .output
            .append(|out| write(exchange, out, shutting_down));
        (Ok(true), None)
    });
    match wrote {
        Some(Ok(true)) => Ok(queued(state, id)),
        Some(Err(error)) => Err(error),
        Some(Ok(false)) | None => Ok(Queued::Closed),
    }
}

/// Reads the options table of `lunet.http.listen`.
fn read_config(options: Option<Table>) -> mlua::Result<ServerConfig> {
    let mut config = ServerConfig::default();
    let Some(options) = options else {
        return Ok(config);
    };
    let bad = |key: &str, what: &str| {
        mlua::Error::runtime(format!("lunet.http.listen: option {key} must be {what}"))
    };
    for pair in options.pairs::<String, Value>() {
        let (key, value) = pair?;
        let positive = |value: &Value| -> mlua::Result<u64> {
            match value {
                Value::Integer(n) if *n > 0 => Ok(*n as u64),
                Value::Number(f) if *f >= 1.0 && f.is_finite() => Ok(*f as u64),
                _ => Err(bad(&key, "a positive number")),
            }
        };
        let limits = &mut config.limits;
        match key.as_str() {
            "max_body" => limits.max_body = positive(&value)?,
            "max_headers" => limits.max_headers = positive(&value)? as usize,
            "max_head" => limits.max_head = positive(&value)? as usize,
            "max_request_line" => limits.max_request_line = positive(&value)? as usize,
            "keepalive_timeout" => config.keepalive_ms = positive(&value)?,
            "timeout" => config.timeout_ms = positive(&value)?,
            "default_type" => {
                config.default_type = match value {
                    Value::Boolean(false) => None,
                    Value::String(s)
                        if writer::write_header(
                            &mut Vec::new(),
                            b"Content-Type",
                            &s.as_bytes(),
                        )
                        .is_ok() =>
                    {
                        Some(s.as_bytes().to_vec())
                    }
                    _ => return Err(bad(&key, "a header value or false")),
                }
            }
            // Passed through to lunet.listen by http.lua, which checks it.
            "tls" => {}
            _ => {
                return Err(mlua::Error::runtime(format!(
                    "lunet.http.listen: unknown option '{key}'"
                )))
            }
        }
    }
    Ok(config)
}

fn wait_word(error: &Option<mlua::LuaString>) -> Option<Vec<u8>> {
    error.as_ref().map(|e| e.as_bytes().to_vec())
}

/// Puts the server's functions on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "http_config",
        lua.create_function(|lua, options: Option<Table>| {
            caps::require(lua, Capability::Listen, "lunet.http.listen")?;
            Ok(Config(Arc::new(read_config(options)?)))
        })?,
    )?;

    core.set(
        "http_begin",
        lua.create_function(|lua, (id, config): (i64, mlua::UserDataRef<Config>)| {
            let exchange = Box::new(Exchange::new(config.0.clone()));
            Ok(with_state(lua, |state| {
                if let Some(entry) = state.conns.get_mut(connection(id)) {
                    entry.http = Some(exchange);
                }
            })?)
        })?,
    )?;

    // Binds `next`, `fields` and `send` to the request and response
    // metatables.
    core.set(
        "http_bind",
        lua.create_function(|lua, (request, response): (Table, Table)| {
            // SAFETY: exec_raw runs the closure in a protected call with the
            // two tables pushed; the closure leaves exactly the two
            // functions above them, which exec_raw returns.
            unsafe {
                lua.exec_raw::<(Function, Function, Function)>((request, response), |state| {
                    let memory = ffi::lua_newuserdatauv(state, std::mem::size_of::<Scratch>(), 0)
                        as *mut Scratch;
                    // Lua aligns userdata memory for any C type.
                    ptr::write(memory, Scratch::default());
                    ffi::lua_createtable(state, 0, 1);
                    ffi::lua_pushcfunction(state, drop_scratch);
                    ffi::lua_setfield(state, -2, c"__gc".as_ptr());
                    ffi::lua_setmetatable(state, -2);
                    // Stack: request, response, scratch.
                    ffi::lua_pushvalue(state, -1);
                    ffi::lua_pushvalue(state, -4);
                    ffi::lua_pushvalue(state, -4);
                    ffi::lua_pushcclosure(state, next, 3);
                    ffi::lua_pushvalue(state, -2);
                    ffi::lua_pushcclosure(state, fields, 1);
                    ffi::lua_pushcclosure(state, send, 0);
                    // Stack: request, response, scratch, next, fields, send.
                    ffi::lua_remove(state, -4);
                    ffi::lua_remove(state, -4);
                    ffi::lua_remove(state, -4);
                })
            }
        })?,
    )?;

    core.set(
        "http_body",
        lua.create_function(
            |lua, (id, sequence, wait_error): (i64, i64, Option<mlua::LuaString>)| {
                let wait_error = wait_word(&wait_error);
                let id = connection(id);
                let mut copy = Vec::new();
                let outcome = with_state(lua, |state| {
                    exchange::with_exchange(state, id, |entry, exchange, _| {
                        if let Err(error) = exchange.check(sequence) {
                            return (Err(error), None);
                        }
                        let (result, parked) =
                            exchange::body(entry, exchange, wait_error.as_deref());
                        if result == Ok(true) {
                            copy.extend_from_slice(exchange.body_bytes());
                        }
                        (Ok(result), parked)
                    })
                })?;
                Ok(match outcome {
                    Some(Err(error)) => misuse_values(lua, format!("req:body: {error}")),
                    Some(Ok(Ok(true))) => (Value::String(lua.create_string(&copy)?), None, None),
                    Some(Ok(Ok(false))) => (Value::Boolean(false), None, None),
                    Some(Ok(Err(word))) => (Value::Nil, Some(word.to_string()), None),
                    None => (Value::Nil, Some("closed".to_string()), None),
                })
            },
        )?,
    )?;

    // Misuse comes back as `nil, message, MISUSE`: the Lua wrapper raises
    // it at its caller (as prelude.lua's lane calls do).
    core.set(
        "http_status",
        lua.create_function(|lua, (id, sequence, status): (i64, i64, Value)| {
            let status = match status {
                Value::Integer(n) if (100..=999).contains(&n) => n as u16,
                Value::Number(f) if (100.0..=999.0).contains(&f) && f.fract() == 0.0 => f as u16,
                other => {
                    let got = match other {
                        Value::Integer(n) => n.to_string(),
                        other => other.type_name().to_string(),
                    };
                    return Ok(Some(format!(
                        "res:status: expected a status code within 100-999, got {got}"
                    )));
                }
            };
            let set = with_state(lua, |state| {
                exchange::with_exchange(state, connection(id), |_, exchange, _| {
                    let set = exchange
                        .check(sequence)
                        .and_then(|()| exchange.set_status(status));
                    (set, None)
                })
            })?;
            Ok(set
                .and_then(Result::err)
                .map(|e| format!("res:status: {e}")))
        })?,
    )?;

    core.set(
        "http_header",
        lua.create_function(
            |lua, (id, sequence, name, value): (i64, i64, mlua::LuaString, Value)| {
                let values = match value {
                    Value::Table(list) => list
                        .sequence_values::<Value>()
                        .map(|v| value_bytes(&v.ok()?))
                        .collect::<Option<Vec<_>>>(),
                    value => value_bytes(&value).map(|v| vec![v]),
                };
                let Some(values) = values else {
                    return Ok(Some(
                        "res:header: the value must be a string, a number or a list of them"
                            .to_string(),
                    ));
                };
                let name = name.as_bytes();
                let added = with_state(lua, |state| {
                    exchange::with_exchange(state, connection(id), |_, exchange, _| {
                        let added = exchange
                            .check(sequence)
                            .and_then(|()| exchange.add_header(&name, &values));
                        (added, None)
                    })
                })?;
                Ok(added
                    .and_then(Result::err)
                    .map(|e| format!("res:header: {e}: {:?}", String::from_utf8_lossy(&name))))
            },
        )?,
    )?;

    core.set(
        "http_write",
        lua.create_function(|lua, (id, sequence, piece): (i64, i64, Value)| {
            let Some(piece) = value_bytes(&piece) else {
                return Ok(misuse_values(
                    lua,
                    "res:write: the piece must be a string".to_string(),
                ));
            };
            let step = with_state(lua, |state| {
                respond(
                    state,
                    connection(id),
                    sequence,
                    piece.len(),
                    |exchange, out, shutting_down| exchange.write_piece(out, &piece, shutting_down),
                )
            })?;
            Ok(match step {
                Err(error) => misuse_values(lua, format!("res:write: {error}")),
                Ok(step) => queued_values(step),
            })
        })?,
    )?;

    core.set(
        "http_fail",
        lua.create_function(|lua, (id, message): (i64, mlua::LuaString)| {
            let id = connection(id);
            let described = with_state(lua, |state| {
                exchange::with_exchange(state, id, |entry, exchange, _| {
                    entry.conn.output.append(|out| exchange.fail(out));
                    (exchange.describe(), None)
                })
            })?;
            let peer = with_state(lua, |state| state.conns.get(id).and_then(|e| e.peer))?;
            tracing::error!(
                target: "lunet::http",
                "handler error ({} from {}): {}",
                described.unwrap_or_default(),
                peer.map_or_else(|| "?".to_string(), |p| p.to_string()),
                message.to_string_lossy()
            );
            Ok(())
        })?,
    )?;

    Ok(())
}

/// Upvalues of `next`: the scratch, the request and response metatables
/// (`fields` has the scratch only).
const SCRATCH: c_int = ffi::lua_upvalueindex(1);
const REQUEST_META: c_int = ffi::lua_upvalueindex(2);
const RESPONSE_META: c_int = ffi::lua_upvalueindex(3);

/// Where `next` copies a request out of the VM's state before making Lua
/// values of it (the state may not be borrowed while Lua allocates).
#[derive(Default)]
struct Scratch {
    view: RequestView,
}

/// `__gc` of the scratch userdata.
unsafe extern "C-unwind" fn drop_scratch(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: this metatable is only set on a Scratch made in http_bind,
    // and __gc runs once.
    let memory = ffi::lua_touserdata(state, 1) as *mut Scratch;
    if !memory.is_null() {
        ptr::drop_in_place(memory);
    }
    0
}

/// Raises a fixed message (nothing with a destructor may be live in the
/// calling frame: lua_error does not return).
unsafe fn raise(state: *mut ffi::lua_State, message: &'static std::ffi::CStr) -> ! {
    ffi::lua_pushstring(state, message.as_ptr());
    ffi::lua_error(state)
}

/// Runs `f` (the Rust part of a C function) with the VM's state, catching
/// a panic; a panic or an unavailable state (a bug) is raised. Nothing with
/// a destructor is left in the caller's frame when it raises.
unsafe fn in_state<R>(state: *mut ffi::lua_State, f: impl FnOnce(&mut VmState) -> R) -> R {
    let outcome = catch_unwind(AssertUnwindSafe(|| with_own_state(f)));
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => raise(
            state,
            c"lunet.http: internal error: the VM's state is not available here",
        ),
        Err(payload) => {
            drop(payload);
            raise(state, c"lunet.http: internal error")
        }
    }
}

/// Returns `nil, message, MISUSE` (the wrapper raises the message).
unsafe fn push_misuse(state: *mut ffi::lua_State, message: &'static std::ffi::CStr) -> c_int {
    ffi::lua_pushnil(state);
    ffi::lua_pushstring(state, message.as_ptr());
    push_bytes(state, MISUSE.as_bytes());
    3
}

/// The string at `index`, borrowed from the stack; None for other types.
unsafe fn string_arg<'a>(state: *mut ffi::lua_State, index: c_int) -> Option<&'a [u8]> {
    if ffi::lua_type(state, index) != ffi::LUA_TSTRING {
        return None;
    }
    let mut len = 0;
    let data = ffi::lua_tolstring(state, index, &mut len);
    // SAFETY: a Lua string is valid for `len` bytes while it is on the
    // stack, which outlives this call.
    Some(std::slice::from_raw_parts(data.cast::<u8>(), len))
}

unsafe fn push_bytes(state: *mut ffi::lua_State, bytes: &[u8]) {
    ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
}

/// Sets `key = value` for each pair in the table on top; a key seen again
/// becomes a list of its values in order (when `repeats` says one may).
unsafe fn set_pairs(
    state: *mut ffi::lua_State,
    text: &[u8],
    pairs: &[(exchange::Span, exchange::Span)],
    repeats: bool,
) {
    for (key, value) in pairs {
        push_bytes(state, key.of(text));
        if repeats {
            ffi::lua_pushvalue(state, -1);
            match ffi::lua_rawget(state, -3) {
                ffi::LUA_TNIL => ffi::lua_pop(state, 1),
                ffi::LUA_TTABLE => {
                    // Stack: t, key, list.
                    let n = ffi::lua_rawlen(state, -1) as ffi::lua_Integer;
                    push_bytes(state, value.of(text));
                    ffi::lua_rawseti(state, -2, n + 1);
                    ffi::lua_pop(state, 2);
                    continue;
                }
                _ => {
                    // Stack: t, key, first: make {first, value}.
                    ffi::lua_createtable(state, 2, 0);
                    ffi::lua_insert(state, -2);
                    ffi::lua_rawseti(state, -2, 1);
                    push_bytes(state, value.of(text));
                    ffi::lua_rawseti(state, -2, 2);
                    ffi::lua_rawset(state, -3);
                    continue;
                }
            }
        }
        push_bytes(state, value.of(text));
        ffi::lua_rawset(state, -3);
    }
}

/// Pushes the request table and the response table of `view`.
unsafe fn push_request(state: *mut ffi::lua_State, id: ffi::lua_Integer, view: &RequestView) {
    let text = &view.text[..];
    // All four fields in the hash part: one allocation less than with an
    // array part for [1] and [2]. `headers` and `query` are made when the
    // handler first reads them (`fields`).
    ffi::lua_createtable(state, 0, 4);
    ffi::lua_pushinteger(state, id);
    ffi::lua_rawseti(state, -2, 1);
    ffi::lua_pushinteger(state, view.sequence);
    ffi::lua_rawseti(state, -2, 2);
    push_bytes(state, view.method.of(text));
    ffi::lua_setfield(state, -2, c"method".as_ptr());
    push_bytes(state, view.path.of(text));
    ffi::lua_setfield(state, -2, c"path".as_ptr());
    ffi::lua_pushvalue(state, REQUEST_META);
    ffi::lua_setmetatable(state, -2);

    ffi::lua_createtable(state, 2, 0);
    ffi::lua_pushinteger(state, view.sequence);
    ffi::lua_rawseti(state, -2, 1);
    ffi::lua_pushinteger(state, id);
    ffi::lua_rawseti(state, -2, 2);
    ffi::lua_pushvalue(state, RESPONSE_META);
    ffi::lua_setmetatable(state, -2);
}

/// `next(conn, nil [, wait_error])` → `req, res` | `false` | nil (step 2;
/// the shape of prelude.lua's `until_read`).
unsafe extern "C-unwind" fn next(state: *mut ffi::lua_State) -> c_int {
    let raw_id = ffi::lua_tointegerx(state, 1, ptr::null_mut());
    let wait_error = string_arg(state, 3);
    let scratch = ffi::lua_touserdata(state, SCRATCH) as *mut Scratch;
    let found = in_state(state, |vm| {
        let id = connection(raw_id);
        let found = exchange::next(vm, id, wait_error);
        if found == Next::Request {
            if let Some(exchange) = vm.conns.get(id).and_then(|e| e.http.as_deref()) {
                // SAFETY: upvalue 1 is the Scratch made in http_bind;
                // nothing else uses it while this runs (no Lua code runs
                // inside the state's borrow).
                (*scratch).view.copy_from(exchange.request());
            }
        }
        found
    });
    match found {
        Next::Request => {
            // Only `next` touches the scratch, and no finalizer can reach
            // it: the view stays put while the tables are built.
            push_request(state, raw_id, &(*scratch).view);
            2
        }
        Next::Wait => {
            ffi::lua_pushboolean(state, 0);
            1
        }
        Next::Done => {
            ffi::lua_pushnil(state);
            1
        }
    }
}

/// `fields(conn, sequence, headers)` → the request's `headers` table
/// (`headers` true) or its `query` table, made when the handler first
/// reads them; nothing once the connection has moved on to another request
/// (or closed).
unsafe extern "C-unwind" fn fields(state: *mut ffi::lua_State) -> c_int {
    let raw_id = ffi::lua_tointegerx(state, 1, ptr::null_mut());
    let sequence = ffi::lua_tointegerx(state, 2, ptr::null_mut());
    let headers = ffi::lua_toboolean(state, 3) != 0;
    let scratch = ffi::lua_touserdata(state, SCRATCH) as *mut Scratch;
    let current = in_state(state, |vm| {
        let view = vm.conns.get(connection(raw_id))?.http.as_deref()?.request();
        if view.sequence != sequence {
            return None;
        }
        // SAFETY: as in `next`: the scratch is only used by these
        // functions, and no Lua code runs inside the state's borrow.
        (*scratch).view.copy_from(view);
        Some(())
    });
    if current.is_none() {
        return 0;
    }
    let view = &(*scratch).view;
    let text = &view.text[..];
    if headers {
        ffi::lua_createtable(state, 0, view.headers.len() as c_int);
        set_pairs(state, text, &view.headers, view.repeated_headers);
    } else {
        let query = view.query.as_deref().unwrap_or(&[]);
        ffi::lua_createtable(state, 0, query.len() as c_int);
        set_pairs(state, text, query, true);
    }
    1
}

/// `send(conn, sequence, body [, content_type])` → `true` | `false` (wait
/// for room, then send again) | `nil, "overloaded"` | `nil, "closed"` |
/// `nil, message, MISUSE`
/// (step 5).
unsafe extern "C-unwind" fn send(state: *mut ffi::lua_State) -> c_int {
    let raw_id = ffi::lua_tointegerx(state, 1, ptr::null_mut());
    let sequence = ffi::lua_tointegerx(state, 2, ptr::null_mut());
    let body: &[u8] = match ffi::lua_type(state, 3) {
        ffi::LUA_TNIL | ffi::LUA_TNONE => b"",
        ffi::LUA_TSTRING => string_arg(state, 3).unwrap_or(b""),
        _ => return push_misuse(state, c"res:send: the body must be a string"),
    };
    let content_type = string_arg(state, 4);
    let sent = in_state(state, |vm| {
        respond(
            vm,
            connection(raw_id),
            sequence,
            body.len(),
            |exchange, out, shutting_down| exchange.send(out, body, content_type, shutting_down),
        )
    });
    let step = match sent {
        Ok(step) => step,
        Err(Misuse::AlreadySent) => {
            return push_misuse(state, c"res:send: the response was already sent")
        }
        Err(_) => {
            return push_misuse(
                state,
                c"res:send: the request is finished (its handler returned)",
            )
        }
    };
    crate::raw::push_queued(state, step)
}
