//! One server connection's HTTP state ([`Exchange`], kept in the
//! connection's entry) and what the server's fast paths do with it, without
//! Lua: parsing the next request out of the buffer, decoding a body,
//! writing a response into the output (`core::proto::http` is the codec).
//! `server.rs` binds these to Lua; its header has the protocol.

use std::cell::RefCell;

use lunet_core::proto::http::response as writer;
use lunet_core::proto::http::{
    self, has_token, url, BodyDecoder, Error, Framing, Limits, Method, Progress, Request, Version,
};
use lunet_core::proto::websocket;

use crate::ids::ConnectionId;
use crate::read::{self, ReadOutcome, ReadRequest};
use crate::state::{ConnEntry, ConnectionPhase, VmState};

/// What `lunet.http.listen`'s options set; shared by the connections of
/// one listener.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub limits: Limits,
    /// Idle time allowed between two requests (nginx's keepalive_timeout).
    pub keepalive_ms: u64,
    /// Longest wait for the rest of a head, a body, or a slow reader.
    pub timeout_ms: u64,
    /// The `Content-Type` of a response with a body whose handler set none
    /// (nginx's default_type).
    pub default_type: Option<Vec<u8>>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Limits::default(),
            keepalive_ms: 75_000,
            timeout_ms: 60_000,
            default_type: Some(b"text/plain".to_vec()),
        }
    }
}

/// Past this capacity the body buffer is given back at the next request.
const KEEP_BODY: usize = 64 * 1024;

/// Where an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for (the rest of) a request head.
    Head,
    /// The handler has the request.
    Handling,
    /// The response is done; the request's unread body is being dropped.
    Discarding,
    /// A WebSocket has the connection now.
    Upgraded,
    /// Nothing more: the connection closes.
    Closed,
}

/// How much of the response is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Nothing,
    /// The head and some chunks: more may follow.
    Streaming,
    Done,
}

/// Where the request body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    Unread,
    /// Read whole: `Exchange::body` holds it.
    Read,
    /// Failed with this error word; the connection closes.
    Failed(&'static str),
}

/// A piece of [`RequestView::text`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    pub fn of<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.start as usize..(self.start + self.len) as usize]
    }
}

/// What the request table shows, copied out of the buffer: the method,
/// the decoded path, lower-cased header names with their values, the
/// decoded query.
#[derive(Clone, Debug, Default)]
pub struct RequestView {
    pub text: Vec<u8>,
    pub sequence: i64,
    pub method: Span,
    pub path: Span,
    pub headers: Vec<(Span, Span)>,
    /// Some header name comes twice (its value becomes a list).
    pub repeated_headers: bool,
    /// `None` without a query string.
    pub query: Option<Vec<(Span, Span)>>,
}

impl RequestView {
    fn push(&mut self, bytes: &[u8], lower: bool) -> Span {
        let start = self.text.len() as u32;
        if lower {
            self.text.extend(bytes.iter().map(u8::to_ascii_lowercase));
        } else {
            self.text.extend_from_slice(bytes);
        }
        Span {
            start,
            len: bytes.len() as u32,
        }
    }

    /// Copies `other` into this one, keeping its allocations.
    pub fn copy_from(&mut self, other: &RequestView) {
        self.text.clear();
        self.text.extend_from_slice(&other.text);
        self.sequence = other.sequence;
        self.method = other.method;
        self.path = other.path;
        self.headers.clear();
        self.headers.extend_from_slice(&other.headers);
        self.repeated_headers = other.repeated_headers;
        match (&mut self.query, &other.query) {
            (Some(mine), Some(theirs)) => {
                mine.clear();
                mine.extend_from_slice(theirs);
            }
            (mine, theirs) => mine.clone_from(theirs),
        }
    }
}

/// One connection's HTTP state.
pub struct Exchange {
    config: std::sync::Arc<ServerConfig>,
    stage: Stage,
    request: RequestView,
    // The request.
    version: Version,
    head_only: bool,
    keep_alive: bool,
    expect_continue: bool,
    continue_sent: bool,
    decoder: Option<BodyDecoder>,
    body_state: BodyState,
    body: Vec<u8>,
    /// The raw head of an upgrade request, for `lunet.ws.upgrade`.
    upgrade_head: Vec<u8>,
    // The response.
    status: u16,
    head: Vec<u8>,
    has_type: bool,
    has_date: bool,
    close_asked: bool,
    sent: Sent,
    chunked: bool,
}

/// A call on a request that is not the one being handled, or a response
/// call out of order: misuse, raised in Lua.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misuse {
    #[error("the request is finished (its handler returned)")]
    Finished,
    #[error("the response was already sent")]
    AlreadySent,
    #[error("the response head was already sent")]
    HeadSent,
    #[error("Content-Length and Transfer-Encoding are set by lunet from what res:send or res:write sends")]
    Framing,
    #[error("invalid header name")]
    HeaderName,
    #[error("invalid header value (a control byte: CR, LF, NUL...)")]
    HeaderValue,
}

impl Exchange {
    pub fn new(config: std::sync::Arc<ServerConfig>) -> Exchange {
        Exchange {
            config,
            stage: Stage::Head,
            request: RequestView::default(),
            version: Version::Http11,
            head_only: false,
            keep_alive: false,
            expect_continue: false,
            continue_sent: false,
            decoder: None,
            body_state: BodyState::Unread,
            body: Vec::new(),
            upgrade_head: Vec::new(),
            status: 200,
            head: Vec::new(),
            has_type: false,
            has_date: false,
            close_asked: false,
            sent: Sent::Nothing,
            chunked: false,
        }
    }

    /// The request being handled, as the request table shows it.
    pub fn request(&self) -> &RequestView {
        &self.request
    }

    /// The request body once `body` returned `Ok(true)`.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Misuse unless `sequence` is the request being handled.
    pub fn check(&self, sequence: i64) -> Result<(), Misuse> {
        if sequence != self.request.sequence || self.stage != Stage::Handling {
            return Err(Misuse::Finished);
        }
        Ok(())
    }

    /// "METHOD /path" of the request, for the log.
    pub fn describe(&self) -> String {
        let text = &self.request.text;
        format!(
            "{} {}",
            String::from_utf8_lossy(self.request.method.of(text)),
            String::from_utf8_lossy(self.request.path.of(text))
        )
    }

    /// Takes a parsed head: copies what the request table shows, decides
    /// keep-alive and the body's decoder, and resets the response.
    fn begin(&mut self, request: &Request<'_>, raw_head: &[u8]) -> Result<(), Error> {
        let path = url::decode_path(request.path)?;
        let query = match request.query {
            Some(query) => Some(url::parse_query(query)?),
            None => None,
        };
        let view = &mut self.request;
        view.text.clear();
        view.headers.clear();
        view.method = view.push(request.method.as_bytes(), false);
        view.path = view.push(&path, false);
        view.repeated_headers = false;
        for header in &request.headers {
            let name = view.push(header.name.as_bytes(), true);
            let value = view.push(header.value, false);
            if !view.repeated_headers {
                let text = &view.text;
                view.repeated_headers = view
                    .headers
                    .iter()
                    .any(|(seen, _)| seen.of(text) == name.of(text));
            }
            view.headers.push((name, value));
        }
        match query {
            Some(pairs) => {
                let mut spans = view.query.take().unwrap_or_default();
                spans.clear();
                for (key, value) in pairs {
                    let key = view.push(&key, false);
                    let value = view.push(&value, false);
                    spans.push((key, value));
                }
                view.query = Some(spans);
            }
            None => view.query = None,
        }
        view.sequence += 1;
        self.upgrade_head.clear();
        if request.upgrade {
            self.upgrade_head.extend_from_slice(raw_head);
        }
        self.version = request.version;
        self.head_only = request.kind == Method::Head;
        self.keep_alive = request.keep_alive;
        self.expect_continue = request.expect_continue;
        self.continue_sent = false;
        self.decoder = match request.framing {
            Framing::None => None,
            framing => Some(BodyDecoder::new(framing, &self.config.limits)),
        };
        self.body_state = if self.decoder.is_none() {
            BodyState::Read
        } else {
            BodyState::Unread
        };
        // An idle keep-alive connection does not keep a big body's memory.
        if self.body.capacity() > KEEP_BODY {
            self.body = Vec::new();
        }
        self.body.clear();
        self.status = 200;
        self.head.clear();
        self.has_type = false;
        self.has_date = false;
        self.close_asked = false;
        self.sent = Sent::Nothing;
        self.chunked = false;
        self.stage = Stage::Handling;
        Ok(())
    }

    /// Whether the status allows a body (RFC 9110 6.4.1).
    fn status_has_body(&self) -> bool {
        !((100..200).contains(&self.status) || self.status == 204 || self.status == 304)
    }

    /// Decides whether the connection outlives this response: the request
    /// asked for it, the handler did not say close, the server is not
    /// stopping, and no body is left half-sent (a client told to wait for
    /// `100 Continue` that never came may still send it).
    fn settle_keep_alive(&mut self, shutting_down: bool) {
        let body_unsent =
            self.expect_continue && !self.continue_sent && self.body_state == BodyState::Unread;
        if self.close_asked
            || shutting_down
            || body_unsent
            || matches!(self.body_state, BodyState::Failed(_))
        {
            self.keep_alive = false;
        }
    }

    /// Writes the status line and header fields. `length`: the body's
    /// length (`None`: chunked, or until close for HTTP/1.0).
    fn write_head(
        &mut self,
        out: &mut Vec<u8>,
        length: Option<u64>,
        content_type: Option<&[u8]>,
        shutting_down: bool,
    ) {
        self.settle_keep_alive(shutting_down);
        let has_body = self.status_has_body();
        if length.is_none() && has_body {
            if self.version == Version::Http11 {
                self.chunked = true;
            } else {
                // HTTP/1.0 has no chunks: the body ends with the connection.
                self.keep_alive = false;
            }
        }
        // `set_status` checked the code.
        let _ = writer::write_status_line(out, Version::Http11, self.status);
        if !self.has_date {
            write_date(out);
        }
        if has_body && !self.has_type {
            let default = self.config.default_type.as_deref();
            let wanted = content_type.or(if length != Some(0) { default } else { None });
            if let Some(value) = wanted {
                out.extend_from_slice(b"Content-Type: ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
        match length {
            Some(length) if has_body => writer::write_content_length(out, length),
            _ if self.chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        if !self.keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(&self.head);
        writer::end_head(out);
    }

    /// A whole response with `body` (written unless HEAD or a status
    /// without one).
    fn write_whole(
        &mut self,
        out: &mut Vec<u8>,
        body: &[u8],
        content_type: Option<&[u8]>,
        shutting_down: bool,
    ) {
        self.write_head(out, Some(body.len() as u64), content_type, shutting_down);
        if !self.head_only && self.status_has_body() {
            out.extend_from_slice(body);
        }
        self.sent = Sent::Done;
    }

    /// `res:write(piece)`: a piece of a streamed body (the head first, if
    /// not yet written).
    pub fn write_piece(&mut self, out: &mut Vec<u8>, piece: &[u8], shutting_down: bool) {
        if self.sent == Sent::Nothing {
            self.write_head(out, None, None, shutting_down);
            self.sent = Sent::Streaming;
        }
        if self.head_only || !self.status_has_body() {
            return;
        }
        if self.chunked {
            writer::write_chunk(out, piece);
        } else {
            out.extend_from_slice(piece);
        }
    }

    /// Ends the response: the default one if nothing was sent (none when
    /// the peer left while sending the body, 408 when the body did not
    /// come in time), the last chunk of a streamed one.
    fn end_response(&mut self, out: &mut Vec<u8>, shutting_down: bool) {
        match self.sent {
            Sent::Nothing => match self.body_state {
                BodyState::Failed("timeout") => {
                    self.status = 408;
                    self.head.clear();
                    self.write_whole(out, b"", None, true);
                }
                BodyState::Failed(_) => {
                    self.keep_alive = false;
                    self.sent = Sent::Done;
                }
                _ => self.write_whole(out, b"", None, shutting_down),
            },
            Sent::Streaming => {
                if self.chunked && !self.head_only {
                    writer::write_last_chunk(out);
                }
                self.sent = Sent::Done;
            }
            Sent::Done => {}
        }
    }

    /// A refused request or body: its error answer, unless a response was
    /// started; the connection closes after it.
    fn refuse(&mut self, out: &mut Vec<u8>, error: &Error) {
        if self.sent == Sent::Nothing {
            writer::write_error_response(out, error);
        }
        self.sent = Sent::Done;
        self.keep_alive = false;
    }

    /// `res:status(code)`.
    pub fn set_status(&mut self, status: u16) -> Result<(), Misuse> {
        if self.sent != Sent::Nothing {
            return Err(Misuse::HeadSent);
        }
        self.status = status;
        Ok(())
    }

    /// `res:header(name, value)`: the framing fields are lunet's own;
    /// `Content-Type`, `Date` and `Connection: close` replace lunet's.
    pub fn add_header(&mut self, name: &[u8], values: &[Vec<u8>]) -> Result<(), Misuse> {
        if self.sent != Sent::Nothing {
            return Err(Misuse::HeadSent);
        }
        let lower = name.to_ascii_lowercase();
        match &lower[..] {
            b"content-length" | b"transfer-encoding" => return Err(Misuse::Framing),
            b"content-type" => self.has_type = true,
            b"date" => self.has_date = true,
            b"connection" => {
                if values.iter().any(|v| has_token(v, "close")) {
                    self.close_asked = true;
                }
                return Ok(());
            }
            _ => {}
        }
        let mark = self.head.len();
        for value in values {
            if let Err(error) = writer::write_header(&mut self.head, name, value) {
                self.head.truncate(mark);
                return Err(match error {
                    writer::WriteError::HeaderName => Misuse::HeaderName,
                    _ => Misuse::HeaderValue,
                });
            }
        }
        Ok(())
    }

    /// `res:send(body)`: the whole response, or the last piece of a
    /// streamed one.
    pub fn send(
        &mut self,
        out: &mut Vec<u8>,
        body: &[u8],
        content_type: Option<&[u8]>,
        shutting_down: bool,
    ) {
        if self.sent == Sent::Streaming {
            self.write_piece(out, body, shutting_down);
            self.end_response(out, shutting_down);
        } else {
            self.write_whole(out, body, content_type, shutting_down);
        }
    }

    /// Whether `res:send` or `res:write` may still write.
    pub fn can_send(&self) -> Result<(), Misuse> {
        if self.sent == Sent::Done {
            return Err(Misuse::AlreadySent);
        }
        Ok(())
    }

    /// A handler error: 500 if nothing was sent; the connection closes.
    pub fn fail(&mut self, out: &mut Vec<u8>) {
        if self.sent == Sent::Nothing {
            self.status = 500;
            self.head.clear();
            self.has_type = false;
            self.keep_alive = false;
            self.write_whole(out, b"internal server error\n", None, true);
        }
        self.stage = Stage::Closed;
    }
}

thread_local! {
    /// The `Date` field of the current second, formatted once per second.
    static DATE: RefCell<(libc::time_t, Vec<u8>)> = const { RefCell::new((-1, Vec::new())) };
}

fn write_date(out: &mut Vec<u8>) {
    // SAFETY: time(NULL) only reads the clock (glibc: a vDSO read of a
    // coarse clock, cheaper than SystemTime::now on every response).
    let second = unsafe { libc::time(std::ptr::null_mut()) };
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second {
            date.1.clear();
            let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(second.max(0) as u64);
            writer::write_date(&mut date.1, now);
            date.0 = second;
        }
        out.extend_from_slice(&date.1);
    });
}

/// How a body pump ended.
enum Pumped {
    Done,
    /// Park a fill for this many buffered bytes.
    NeedMore(usize),
    Failed(Error),
}

/// Decodes as much of the body as the buffer holds: into `body` when
/// `keep`, dropped otherwise.
fn pump_body(
    decoder: &mut Option<BodyDecoder>,
    body: &mut Vec<u8>,
    entry: &mut ConnEntry,
    keep: bool,
) -> Pumped {
    let Some(active) = decoder.as_mut() else {
        return Pumped::Done;
    };
    loop {
        let step = match active.decode(entry.conn.input.as_slice()) {
            Ok(step) => step,
            Err(error) => return Pumped::Failed(error),
        };
        if keep {
            body.extend_from_slice(step.data);
        }
        let (consumed, done) = (step.consumed, step.done);
        entry.conn.input.consume(consumed);
        if done {
            *decoder = None;
            return Pumped::Done;
        }
        if consumed == 0 {
            return Pumped::NeedMore(entry.conn.input.len() + 1);
        }
    }
}

/// What a wait for more input found.
enum Waited {
    /// The fill is satisfied: go on.
    Ready,
    /// The read is parked: the wrapper yields.
    Parked,
    /// The peer left (or reset).
    Gone,
}

/// Reads until `at_least` bytes are buffered, or parks a fill read with
/// `timeout_ms` (see `read.rs`).
fn fill(entry: &mut ConnEntry, at_least: usize, timeout_ms: u64) -> (Waited, Option<ReadRequest>) {
    let request = ReadRequest::Fill { at_least };
    match read::try_read(entry, &request) {
        ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => (Waited::Ready, None),
        ReadOutcome::Wait => {
            entry.timeout_ms = timeout_ms;
            (Waited::Parked, Some(request))
        }
        ReadOutcome::Failed { err, .. } => {
            log_tls_failure(entry, err.as_bytes());
            (Waited::Gone, None)
        }
    }
}

/// A TLS failure (bytes that are not TLS, a stalled handshake, a client
/// that refused the certificate) costs only its connection, and the log
/// says why: nothing else does, as no request was read.
fn log_tls_failure(entry: &ConnEntry, error: &[u8]) {
    if error.starts_with(b"tls: ") {
        let peer = peer(entry);
        let error = String::from_utf8_lossy(error);
        tracing::info!(target: "lunet::http", "connection from {peer} ended: {error}");
    }
}

/// What [`next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A request: `Exchange::request` shows it.
    Request,
    /// The read is parked: yield `OP.READ`, then call again.
    Wait,
    /// The connection is done.
    Done,
}

/// The client's address, for the log.
fn peer(entry: &ConnEntry) -> String {
    entry
        .peer
        .map_or_else(|| "?".to_string(), |peer| peer.to_string())
}

fn log_refusal(entry: &ConnEntry, error: &Error) {
    let peer = peer(entry);
    tracing::info!(target: "lunet::http", "{} to {peer}: {error}", error.status());
}

/// The exchange of connection `id`, with its entry (split borrows).
fn parts(state: &mut VmState, id: ConnectionId) -> Option<(&mut ConnEntry, Box<Exchange>)> {
    let entry = state.conns.get_mut(id)?;
    let exchange = entry.http.take()?;
    Some((entry, exchange))
}

/// Runs `f` on connection `id`'s entry and exchange (taken out of the
/// entry for the call and put back), marks the connection for the flush
/// if `f` wrote, and, when `f` parked a fill, records the read.
pub fn with_exchange<R>(
    state: &mut VmState,
    id: ConnectionId,
    f: impl FnOnce(&mut ConnEntry, &mut Exchange, bool) -> (R, Option<ReadRequest>),
) -> Option<R> {
    // While the host drains (reload, SIGTERM) every answer closes its
    // connection, so keep-alive clients move to the new hosts.
    let shutting_down = state.shutting_down || state.draining;
    let (entry, mut exchange) = parts(state, id)?;
    let before = entry.conn.output.len();
    let (result, parked) = f(entry, &mut exchange, shutting_down);
    let wrote = entry.conn.output.len() != before;
    entry.http = Some(exchange);
    if wrote {
        state.mark_dirty(id);
    }
    if let Some(request) = parked {
        state.pending_read = Some((id, request));
    }
    Some(result)
}

/// Step 1 of `server.rs`'s protocol: ends the previous exchange, drops an
/// unread body, parses the next request.
pub fn next(state: &mut VmState, id: ConnectionId, wait_error: Option<&[u8]>) -> Next {
    with_exchange(state, id, |entry, exchange, shutting_down| {
        if entry.phase == ConnectionPhase::Closing {
            return (Next::Done, None);
        }
        if let Some(error) = wait_error {
            log_tls_failure(entry, error);
            if error == b"timeout" && exchange.stage == Stage::Head && !entry.conn.input.is_empty()
            {
                tracing::info!(target: "lunet::http", "408: request head not received in time");
                entry.conn.output.append(|out| {
                    let _ = writer::write_status_line(out, Version::Http11, 408);
                    out.extend_from_slice(b"Connection: close\r\nContent-Length: 0\r\n\r\n");
                });
            }
            exchange.stage = Stage::Closed;
            return (Next::Done, None);
        }
        next_step(entry, exchange, shutting_down)
    })
    .unwrap_or(Next::Done)
}

fn next_step(
    entry: &mut ConnEntry,
    exchange: &mut Exchange,
    shutting_down: bool,
) -> (Next, Option<ReadRequest>) {
    loop {
        match exchange.stage {
            Stage::Handling => {
                entry
                    .conn
                    .output
                    .append(|out| exchange.end_response(out, shutting_down));
                if !exchange.keep_alive {
                    exchange.stage = Stage::Closed;
                    return (Next::Done, None);
                }
                exchange.stage = Stage::Discarding;
            }
            Stage::Discarding => {
                match pump_body(&mut exchange.decoder, &mut exchange.body, entry, false) {
                    Pumped::Done => exchange.stage = Stage::Head,
                    Pumped::NeedMore(at_least) => {
                        match fill(entry, at_least, exchange.config.timeout_ms) {
                            (Waited::Ready, _) => {}
                            (Waited::Parked, parked) => return (Next::Wait, parked),
                            (Waited::Gone, _) => return (Next::Done, None),
                        }
                    }
                    Pumped::Failed(_) => {
                        exchange.stage = Stage::Closed;
                        return (Next::Done, None);
                    }
                }
            }
            Stage::Head => {
                let input = entry.conn.input.as_slice();
                match http::parse_request(input, &exchange.config.limits) {
                    Ok(Progress::Done(request, used)) => {
                        let begun = exchange.begin(&request, &input[..used]);
                        entry.conn.input.consume(used);
                        if let Err(error) = begun {
                            log_refusal(entry, &error);
                            entry.conn.output.append(|out| exchange.refuse(out, &error));
                            exchange.stage = Stage::Closed;
                            return (Next::Done, None);
                        }
                        entry.timeout_ms = exchange.config.timeout_ms;
                        return (Next::Request, None);
                    }
                    Ok(Progress::NeedMore { at_least }) => {
                        let config = &exchange.config;
                        let timeout = if input.is_empty() {
                            config.keepalive_ms
                        } else {
                            config.timeout_ms
                        };
                        match fill(entry, at_least, timeout) {
                            (Waited::Ready, _) => {}
                            (Waited::Parked, parked) => return (Next::Wait, parked),
                            (Waited::Gone, _) => return (Next::Done, None),
                        }
                    }
                    Err(error) => {
                        log_refusal(entry, &error);
                        entry.conn.output.append(|out| exchange.refuse(out, &error));
                        exchange.stage = Stage::Closed;
                        return (Next::Done, None);
                    }
                }
            }
            Stage::Upgraded | Stage::Closed => return (Next::Done, None),
        }
    }
}

/// Step 3: `Ok(true)` once the body is whole (`Exchange::body_bytes`),
/// `Ok(false)` to wait, `Err(word)` when it failed (an error answer is
/// written if nothing was sent yet; the connection closes after).
pub fn body(
    entry: &mut ConnEntry,
    exchange: &mut Exchange,
    wait_error: Option<&[u8]>,
) -> (Result<bool, &'static str>, Option<ReadRequest>) {
    match exchange.body_state {
        BodyState::Read => return (Ok(true), None),
        BodyState::Failed(word) => return (Err(word), None),
        BodyState::Unread => {}
    }
    if let Some(error) = wait_error {
        log_tls_failure(entry, error);
        let word = match error {
            b"timeout" => "timeout",
            b"reset" => "reset",
            _ => "closed",
        };
        exchange.body_state = BodyState::Failed(word);
        exchange.keep_alive = false;
        return (Err(word), None);
    }
    if exchange.expect_continue && !exchange.continue_sent {
        exchange.continue_sent = true;
        if exchange.sent == Sent::Nothing {
            entry.conn.output.extend(writer::CONTINUE);
        }
    }
    loop {
        match pump_body(&mut exchange.decoder, &mut exchange.body, entry, true) {
            Pumped::Done => {
                exchange.body_state = BodyState::Read;
                return (Ok(true), None);
            }
            Pumped::NeedMore(at_least) => match fill(entry, at_least, exchange.config.timeout_ms) {
                (Waited::Ready, _) => {}
                (Waited::Parked, parked) => return (Ok(false), parked),
                (Waited::Gone, _) => {
                    exchange.body_state = BodyState::Failed("closed");
                    exchange.keep_alive = false;
                    return (Err("closed"), None);
                }
            },
            Pumped::Failed(error) => {
                log_refusal(entry, &error);
                entry.conn.output.append(|out| exchange.refuse(out, &error));
                let word = match error {
                    Error::PayloadTooLarge => "body too large",
                    _ => "invalid body",
                };
                exchange.body_state = BodyState::Failed(word);
                return (Err(word), None);
            }
        }
    }
}

/// `lunet.ws.upgrade`'s half on the HTTP side: checks the request is a
/// WebSocket upgrade and answers 101, or refuses it with its status (426
/// with `Sec-WebSocket-Version: 13`). The connection then belongs to the
/// caller; the loop ends when the handler returns.
pub fn upgrade(
    entry: &mut ConnEntry,
    exchange: &mut Exchange,
    protocol: Option<&str>,
) -> Result<(), String> {
    if exchange.sent != Sent::Nothing {
        return Err("the response was already started".into());
    }
    let head = std::mem::take(&mut exchange.upgrade_head);
    let checked = match http::parse_request(&head, &exchange.config.limits) {
        Ok(Progress::Done(request, _)) => websocket::check_upgrade(&request).map(<[u8]>::to_vec),
        _ => Err(websocket::HandshakeError {
            status: 400,
            reason: "not a websocket upgrade",
        }),
    };
    match checked {
        Ok(key) => {
            entry
                .conn
                .output
                .append(|out| websocket::write_accept(out, &key, protocol));
            exchange.sent = Sent::Done;
            exchange.stage = Stage::Upgraded;
            entry.timeout_ms = 0;
            Ok(())
        }
        Err(refusal) => {
            exchange.status = refusal.status;
            exchange.keep_alive = false;
            exchange.close_asked = true;
            if refusal.status == 426 {
                exchange
                    .head
                    .extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
            }
            let body = format!("{}\n", refusal.reason);
            entry
                .conn
                .output
                .append(|out| exchange.write_whole(out, body.as_bytes(), None, true));
            Err(refusal.reason.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn exchange_for(raw: &[u8]) -> Exchange {
        let mut exchange = Exchange::new(Arc::new(ServerConfig::default()));
        let limits = exchange.config.limits.clone();
        match http::parse_request(raw, &limits) {
            Ok(Progress::Done(request, used)) => exchange.begin(&request, &raw[..used]).unwrap(),
            other => panic!("{other:?}"),
        }
        exchange
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn a_whole_response_has_date_type_and_length() {
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        exchange.send(&mut out, b"hello", None, false);
        let text = text(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.ends_with("Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
            "{text}"
        );
        assert_eq!(exchange.can_send(), Err(Misuse::AlreadySent));
    }

    #[test]
    fn head_gets_the_length_without_the_body() {
        let mut exchange = exchange_for(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        exchange.send(&mut out, b"hello", None, false);
        assert!(
            text(&out).ends_with("Content-Length: 5\r\n\r\n"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn streaming_is_chunked_in_1_1_and_closes_in_1_0() {
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        exchange.write_piece(&mut out, b"abc", false);
        exchange.send(&mut out, b"de", None, false);
        let text = text(&out);
        assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            "{text}"
        );
        assert!(exchange.keep_alive);

        let mut exchange = exchange_for(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let mut out = Vec::new();
        exchange.write_piece(&mut out, b"abc", false);
        exchange.end_response(&mut out, false);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nabc"), "{text}");
        assert!(!exchange.keep_alive);
    }

    #[test]
    fn no_body_statuses_have_no_length_or_type() {
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        exchange.set_status(204).unwrap();
        let mut out = Vec::new();
        exchange.send(&mut out, b"ignored", None, false);
        let text = text(&out);
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(
            !text.contains("Content-Length") && !text.contains("Content-Type"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert_eq!(exchange.set_status(200), Err(Misuse::HeadSent));
    }

    #[test]
    fn headers_the_handler_sets() {
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let header = |e: &mut Exchange, name: &[u8], values: &[&[u8]]| {
            let values: Vec<Vec<u8>> = values.iter().map(|v| v.to_vec()).collect();
            e.add_header(name, &values)
        };
        header(&mut exchange, b"Content-Type", &[b"application/json"]).unwrap();
        header(&mut exchange, b"Set-Cookie", &[b"a=1", b"b=2"]).unwrap();
        header(&mut exchange, b"Connection", &[b"close"]).unwrap();
        assert_eq!(
            header(&mut exchange, b"Content-Length", &[b"3"]),
            Err(Misuse::Framing)
        );
        assert_eq!(
            header(&mut exchange, b"X", &[b"ok", b"a\r\nb"]),
            Err(Misuse::HeaderValue)
        );
        assert_eq!(
            header(&mut exchange, b"X Y", &[b"a"]),
            Err(Misuse::HeaderName)
        );
        let mut out = Vec::new();
        exchange.send(&mut out, b"{}", None, false);
        let text = text(&out);
        assert_eq!(text.matches("Content-Type").count(), 1, "{text}");
        assert!(
            !text.contains("X: ok"),
            "a refused header leaves nothing: {text}"
        );
        assert!(
            text.contains("Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
            "{text}"
        );
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(!exchange.keep_alive);
    }

    #[test]
    fn an_unanswered_expect_closes_the_connection() {
        let mut exchange = exchange_for(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        let mut out = Vec::new();
        exchange.send(&mut out, b"no", None, false);
        assert!(text(&out).contains("Connection: close\r\n"));
    }

    #[test]
    fn a_handler_failure_answers_500_only_before_anything_was_sent() {
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        exchange.fail(&mut out);
        assert!(text(&out).starts_with("HTTP/1.1 500 "), "{}", text(&out));
        let mut exchange = exchange_for(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut out = Vec::new();
        exchange.write_piece(&mut out, b"partial", false);
        let sent = out.len();
        exchange.fail(&mut out);
        assert_eq!(out.len(), sent);
    }

    #[test]
    fn requests_are_copied_with_lower_case_names_and_decoded_parts() {
        let exchange = exchange_for(
            b"GET /a%20b?x=1&y=2&x=3 HTTP/1.1\r\nHost: h\r\nX-One: 1\r\nx-one: 2\r\n\r\n",
        );
        let view = exchange.request();
        let text = &view.text;
        assert_eq!(view.path.of(text), b"/a b");
        assert_eq!(view.headers[1].0.of(text), b"x-one");
        assert!(view.repeated_headers);
        let query = view.query.as_ref().unwrap();
        assert_eq!(query.len(), 3);
        assert_eq!(query[2].1.of(text), b"3");
        assert_eq!(view.sequence, 1);
    }
}
