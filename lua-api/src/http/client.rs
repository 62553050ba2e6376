//! The client half of `lunet.http` as Lua sees it: URLs split, requests
//! written into a connection's output and responses read from its buffer
//! in Rust (`core::proto::http`); `lunet.http.request` in `http.lua` drives
//! them (connect or take from the pool, write, read, keep or close).
//!
//! Reading a response (`core.http_response(conn, reader [, wait_error])`):
//! the head (interim 1xx answers are skipped), then the body by its
//! framing (Content-Length, chunked, or until the server closes), bounded
//! by `max_body`. It returns the response table, whether the connection
//! may be reused and the bytes it took; `false` when it must wait (a `Fill` read is parked, the
//! caller yields `OP.READ` and calls again with the wait's error if it
//! failed); or `nil, err, started` (`started`: some of the response had
//! arrived, so the request was seen: not safe to retry).

use std::net::IpAddr;

use lunet_core::proto::http::response::{self as writer, WriteError};
use lunet_core::proto::http::{self, BodyDecoder, Error, Framing, Limits, Method, Progress};
use mlua::{Lua, Table, UserData, UserDataRefMut, Value};

use super::value_bytes;
use crate::api::{admit, queued, Queued};
use crate::caps::{self, Capability};
use crate::ids::ConnectionId;
use crate::read::{self, ReadOutcome, ReadRequest};
use crate::state::{with_state, ConnEntry, ConnectionPhase};

/// The default bound on a response body held in memory.
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;

/// A URL of `lunet.http.request` or `lunet.ws.connect`, split.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    /// The host as written (brackets removed from an IPv6 literal).
    pub host: String,
    pub port: u16,
    /// Path and query, "/" at least.
    pub target: String,
}

/// Splits `scheme://host[:port][/path][?query][#fragment]`; the schemes
/// are `schemes` (with their default ports).
pub fn parse_url(url: &str, schemes: &[(&str, u16)]) -> Result<Url, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not an absolute URL (scheme://host/path)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = schemes
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, port)| *port)
        .ok_or_else(|| format!("unsupported scheme '{scheme}' in '{url}'"))?;
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.contains('@') {
        return Err(format!("user info in '{url}' is not supported"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in '{url}'"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("no valid host in '{url}'"));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("invalid port in '{url}'"))?,
    };
    let target = if target.is_empty() {
        "/".to_string()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "'{url}' has spaces or control bytes (percent-encode them)"
        ));
    }
    Ok(Url {
        scheme,
        host: host.to_string(),
        port,
        target,
    })
}

/// `host:port` for a connect, and the `Host` field: an IPv6 literal in
/// brackets; the port left out of `Host` when it is the default.
pub fn authority(host: &str, port: u16, default_port: u16) -> (String, String) {
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let field = if port == default_port {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    (format!("{host}:{port}"), field)
}

/// Where a response read is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Head,
    Body,
    Done,
}

/// One response being read (a userdata, one per request).
pub struct Reader {
    method: Method,
    limits: Limits,
    stage: Stage,
    status: u16,
    reason: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    decoder: Option<BodyDecoder>,
    until_close: bool,
    keep_alive: bool,
    body: Vec<u8>,
    /// Some byte of the response arrived.
    started: bool,
    /// Bytes the response took off the connection, framing included.
    consumed: u64,
}

impl UserData for Reader {}

impl Reader {
    fn new(method: &str, max_body: u64) -> Reader {
        Reader {
            method: Method::from_text(method),
            limits: Limits {
                max_body,
                ..Limits::default()
            },
            stage: Stage::Head,
            status: 0,
            reason: String::new(),
            headers: Vec::new(),
            decoder: None,
            until_close: false,
            keep_alive: false,
            body: Vec::new(),
            started: false,
            consumed: 0,
        }
    }
}

/// What a read step found.
enum Step {
    Done,
    Wait(ReadRequest),
    Failed(String),
}

/// Reads as much of the response as the buffer (and the socket, while
/// readable) holds.
fn advance(entry: &mut ConnEntry, reader: &mut Reader) -> Step {
    loop {
        match reader.stage {
            Stage::Done => return Step::Done,
            Stage::Head => {
                let input = entry.conn.input.as_slice();
                reader.started |= !input.is_empty();
                match http::parse_response(input, &reader.limits, reader.method) {
                    Ok(Progress::Done(response, used)) => {
                        let interim =
                            (100..200).contains(&response.status) && response.status != 101;
                        if !interim {
                            reader.status = response.status;
                            reader.reason = response.reason.to_string();
                            reader.headers = response
                                .headers
                                .iter()
                                .map(|h| {
                                    (h.name.to_ascii_lowercase().into_bytes(), h.value.to_vec())
                                })
                                .collect();
                            reader.keep_alive = response.keep_alive;
                            reader.until_close = response.framing == Framing::UntilClose;
                            reader.decoder = match response.framing {
                                Framing::None => None,
                                framing => Some(BodyDecoder::for_response(framing, &reader.limits)),
                            };
                            reader.stage = if reader.decoder.is_some() {
                                Stage::Body
                            } else {
                                Stage::Done
                            };
                        }
                        entry.conn.input.consume(used);
                        reader.consumed += used as u64;
                    }
                    Ok(Progress::NeedMore { at_least }) => {
                        if let Some(step) = fill(entry, at_least, "closed before the response") {
                            return step;
                        }
                    }
                    Err(error) => return Step::Failed(response_error(&error)),
                }
            }
            Stage::Body => {
                let Some(decoder) = reader.decoder.as_mut() else {
                    reader.stage = Stage::Done;
                    continue;
                };
                let step = match decoder.decode(entry.conn.input.as_slice()) {
                    Ok(step) => step,
                    Err(error) => return Step::Failed(response_error(&error)),
                };
                reader.body.extend_from_slice(step.data);
                let (consumed, done) = (step.consumed, step.done);
                entry.conn.input.consume(consumed);
                reader.consumed += consumed as u64;
                if done {
                    reader.stage = Stage::Done;
                } else if consumed == 0 {
                    let at_least = entry.conn.input.len() + 1;
                    match fill(entry, at_least, "closed in the middle of the body") {
                        None => {}
                        // The end of a body that runs until the server closes.
                        Some(Step::Failed(_)) if reader.until_close && entry.conn.eof => {
                            reader.stage = Stage::Done;
                            reader.keep_alive = false;
                        }
                        Some(step) => return step,
                    }
                }
            }
        }
    }
}

/// Reads until `at_least` bytes are buffered: None to go on, or the step
/// to return (wait; or the peer left: `gone`).
fn fill(entry: &mut ConnEntry, at_least: usize, gone: &str) -> Option<Step> {
    let request = ReadRequest::Fill { at_least };
    match read::try_read(entry, &request) {
        ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => None,
        ReadOutcome::Wait => Some(Step::Wait(request)),
        ReadOutcome::Failed { err, .. } => Some(Step::Failed(if err == "closed" {
            gone.to_string()
        } else {
            err.to_string()
        })),
    }
}

fn response_error(error: &Error) -> String {
    match error {
        Error::PayloadTooLarge => "response body larger than max_body".to_string(),
        Error::BadResponse(_) => error.to_string(),
        other => format!("invalid response: {other}"),
    }
}

/// Writes a request: its line, `Host` (unless given), the caller's
/// fields, `Content-Length` of the body (for POST, PUT and PATCH also
/// when it is empty), the body.
fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    host: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
    body: &[u8],
) -> Result<(), WriteError> {
    writer::write_request_line(out, method, target)?;
    if !fields
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(b"host"))
    {
        writer::write_header(out, b"Host", host.as_bytes())?;
    }
    for (name, value) in fields {
        writer::write_header(out, name, value)?;
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        writer::write_content_length(out, body.len() as u64);
    }
    writer::end_head(out);
    out.extend_from_slice(body);
    Ok(())
}

/// A whole client request: the line, `Host` (unless `headers` has one),
/// the caller's `headers` (`{name = value}` or `{name = {v1, v2}}`;
/// framing fields are lunet's), `Content-Length` of the body (for POST,
/// PUT and PATCH also when it is empty), the body. The connector's
/// `load.http.request` builds its requests with it too.
pub fn build_request(
    method: &str,
    target: &str,
    host: &str,
    headers: Option<&Table>,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let fields = request_fields(headers)?;
    let mut request = Vec::with_capacity(256 + body.len());
    write_request(&mut request, method, target, host, &fields, body).map_err(|e| e.to_string())?;
    Ok(request)
}

/// Header fields as (name, value) pairs, in order.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// The caller's header fields: `{name = value}` or `{name = {v1, v2}}`.
/// Framing fields are lunet's.
fn request_fields(headers: Option<&Table>) -> Result<Fields, String> {
    let mut fields = Vec::new();
    let Some(headers) = headers else {
        return Ok(fields);
    };
    for pair in headers.pairs::<Value, Value>() {
        let (name, value) = pair.map_err(|e| e.to_string())?;
        let Value::String(name) = name else {
            return Err("header names must be strings".into());
        };
        let name = name.as_bytes().to_vec();
        if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            return Err(
                "Content-Length and Transfer-Encoding are set by lunet from the body".into(),
            );
        }
        let values = match &value {
            Value::Table(list) => list
                .sequence_values::<Value>()
                .map(|v| v.ok().as_ref().and_then(value_bytes))
                .collect::<Option<Vec<_>>>(),
            value => value_bytes(value).map(|v| vec![v]),
        };
        let Some(values) = values else {
            return Err(format!(
                "the value of header '{}' must be a string, a number or a list of them",
                String::from_utf8_lossy(&name)
            ));
        };
        fields.extend(values.into_iter().map(|v| (name.clone(), v)));
    }
    Ok(fields)
}

/// The response table: `status`, `reason`, `headers` (lower-case names, a
/// repeated field as a list of its values), `body`.
fn response_table(lua: &Lua, reader: &Reader) -> mlua::Result<Table> {
    let response = lua.create_table_with_capacity(0, 4)?;
    response.raw_set("status", reader.status)?;
    response.raw_set("reason", reader.reason.as_str())?;
    let headers = lua.create_table_with_capacity(0, reader.headers.len())?;
    for (name, value) in &reader.headers {
        let name = lua.create_string(name)?;
        let value = lua.create_string(value)?;
        match headers.raw_get::<Value>(&name)? {
            Value::Nil => headers.raw_set(name, value)?,
            Value::Table(list) => list.raw_push(value)?,
            first => headers.raw_set(
                name,
                lua.create_sequence_from([first, Value::String(value)])?,
            )?,
        }
    }
    response.raw_set("headers", headers)?;
    response.raw_set("body", lua.create_string(&reader.body)?)?;
    Ok(response)
}

/// Puts the client's functions on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    // `http_url(url)` → scheme, host, port, target, connect address, Host
    // field | nil, err. The client's capability check lives here: every
    // request starts with it.
    core.set(
        "http_url",
        lua.create_function(|lua, (url, what): (mlua::LuaString, mlua::LuaString)| {
            caps::require(lua, Capability::Net, &what.to_string_lossy())?;
            let schemes: &[(&str, u16)] = if &*what.as_bytes() == b"lunet.ws.connect" {
                &[("ws", 80), ("wss", 443)]
            } else {
                &[("http", 80), ("https", 443)]
            };
            Ok(match parse_url(&url.to_string_lossy(), schemes) {
                Ok(url) => {
                    let default = schemes
                        .iter()
                        .find(|(name, _)| *name == url.scheme)
                        .map_or(80, |(_, port)| *port);
                    let (address, host) = authority(&url.host, url.port, default);
                    let literal = url.host.parse::<IpAddr>().is_ok() || url.host == "localhost";
                    mlua::MultiValue::from_vec(vec![
                        Value::String(lua.create_string(&url.scheme)?),
                        Value::String(lua.create_string(&url.host)?),
                        Value::Integer(i64::from(url.port)),
                        Value::String(lua.create_string(&url.target)?),
                        Value::String(lua.create_string(&address)?),
                        Value::String(lua.create_string(&host)?),
                        Value::Boolean(literal),
                    ])
                }
                Err(error) => mlua::MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::String(lua.create_string(&error)?),
                ]),
            })
        })?,
    )?;

    // `http_write_request(conn, method, target, host, headers, body)` →
    // true | false (wait for the peer to read) | nil, "closed" | nil, err,
    // MISUSE.
    core.set(
        "http_write_request",
        lua.create_function(
            |lua,
             (id, method, target, host, headers, body): (
                i64,
                String,
                String,
                String,
                Option<Table>,
                Option<mlua::LuaString>,
            )| {
                let misuse = |message: String| {
                    Ok((
                        Value::Nil,
                        Some(format!("lunet.http.request: {message}")),
                        Some("lunet:misuse"),
                    ))
                };
                let body = body.as_ref().map(|b| b.as_bytes());
                let body: &[u8] = body.as_deref().unwrap_or(b"");
                let request = match build_request(&method, &target, &host, headers.as_ref(), body) {
                    Ok(request) => request,
                    Err(message) => return misuse(message),
                };
                let id = ConnectionId::from_lua_integer(id);
                let step = with_state(lua, |state| {
                    if let Some(refused) = admit(state, id, request.len()) {
                        return Some(refused);
                    }
                    let entry = state.conns.get_mut(id)?;
                    if entry.phase != ConnectionPhase::Open || entry.conn.failed {
                        return None;
                    }
                    entry.conn.output.extend(&request);
                    Some(queued(state, id))
                })?;
                Ok(match step {
                    Some(Queued::Ok) => (Value::Boolean(true), None, None),
                    Some(Queued::Wait) => (Value::Boolean(false), None, None),
                    Some(Queued::Overloaded) => (Value::Nil, Some("overloaded".to_string()), None),
                    Some(Queued::Closed) | None => (Value::Nil, Some("closed".to_string()), None),
                })
            },
        )?,
    )?;

    core.set(
        "http_reader",
        lua.create_function(|_, (method, max_body): (String, Option<f64>)| {
            let max_body = max_body
                .filter(|m| *m >= 0.0 && m.is_finite())
                .map_or(DEFAULT_MAX_BODY, |m| m as u64);
            Ok(Reader::new(&method, max_body))
        })?,
    )?;

    core.set(
        "http_response",
        lua.create_function(
            |lua,
             (id, mut reader, wait_error): (
                i64,
                UserDataRefMut<Reader>,
                Option<mlua::LuaString>,
            )| {
                let id = ConnectionId::from_lua_integer(id);
                // A wait that ended with "closed" goes through `advance`
                // like any read: the end of a body that runs until the
                // server closes is no error, and the words for the others
                // are chosen there.
                let step = match wait_error.filter(|word| &*word.as_bytes() != b"closed") {
                    Some(word) => {
                        Step::Failed(String::from_utf8_lossy(&word.as_bytes()).into_owned())
                    }
                    None => with_state(lua, |state| {
                        let Some(entry) = state.conns.get_mut(id) else {
                            return Step::Failed("closed".into());
                        };
                        let step = advance(entry, &mut reader);
                        if let Step::Wait(request) = &step {
                            state.pending_read = Some((id, request.clone()));
                        }
                        step
                    })?,
                };
                Ok(match step {
                    Step::Done => mlua::MultiValue::from_vec(vec![
                        Value::Table(response_table(lua, &reader)?),
                        Value::Boolean(reader.keep_alive),
                        Value::Integer(reader.consumed as i64),
                    ]),
                    Step::Wait(_) => mlua::MultiValue::from_vec(vec![Value::Boolean(false)]),
                    Step::Failed(error) => mlua::MultiValue::from_vec(vec![
                        Value::Nil,
                        Value::String(lua.create_string(&error)?),
                        Value::Boolean(reader.started),
                    ]),
                })
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTTP: &[(&str, u16)] = &[("http", 80), ("https", 443)];

    #[test]
    fn urls() {
        let url = parse_url("http://example.com/a/b?c=d#frag", HTTP).unwrap();
        assert_eq!(
            url,
            Url {
                scheme: "http".into(),
                host: "example.com".into(),
                port: 80,
                target: "/a/b?c=d".into()
            }
        );
        let url = parse_url("HTTPS://[::1]:8443", HTTP).unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.target.as_str()),
            ("::1", 8443, "/")
        );
        let url = parse_url("http://h:81?x", HTTP).unwrap();
        assert_eq!(url.target, "/?x");
        for bad in [
            "example.com/x",
            "ftp://h/",
            "http:///x",
            "http://h:0/",
            "http://h:99999/",
            "http://u@h/",
            "http://h/a b",
            "http://[::1/",
        ] {
            assert!(parse_url(bad, HTTP).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(
            authority("::1", 80, 80),
            ("[::1]:80".to_string(), "[::1]".to_string())
        );
        assert_eq!(
            authority("h", 8080, 80),
            ("h:8080".to_string(), "h:8080".to_string())
        );
    }

    #[test]
    fn requests() {
        let mut out = Vec::new();
        let fields = vec![(b"X-A".to_vec(), b"1".to_vec())];
        write_request(&mut out, "POST", "/p?q", "h:81", &fields, b"body").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nContent-Length: 4\r\n\r\nbody"
        );
        let mut out = Vec::new();
        let fields = vec![(b"X".to_vec(), b"a\r\nb".to_vec())];
        assert!(write_request(&mut out, "GET", "/", "h", &fields, b"").is_err());
    }
}
