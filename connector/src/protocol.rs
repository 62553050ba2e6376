//! The built-in profiles as request writers and reply parsers.
//!
//! Contract of an [`Exchange`] (one per connection):
//! 1. The engine calls [`Exchange::write_request`] each time it sends; the
//!    exchange appends exactly one request to the output and remembers what
//!    it expects back (several requests may be in flight: pipelining).
//! 2. When bytes arrive the engine calls [`Exchange::parse`] with everything
//!    unparsed so far. The exchange looks for the reply to its oldest request
//!    in flight at the start of that input, and answers `Incomplete` (wait
//!    for more bytes), `Partial` (it took the first bytes of a long reply,
//!    e.g. a body it skips, and waits for the rest) or `Done` with how many
//!    bytes the reply took.
//! 4. Memory stays bounded whatever the server sends: an exchange answers
//!    `Incomplete` only while what it waits for is short (a head, a line,
//!    at most [`MAX_HEAD`] bytes); longer replies are taken as they come
//!    with `Partial`, or refused.
//! 3. A reply that is wrong (malformed, not matching what was sent, an error
//!    reply) is `Done` with `Err`: the engine counts a protocol error and
//!    reconnects, since the stream can no longer be trusted.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::args::{HttpSpec, RawEnd, RawSpec, RespSpec};
use crate::stats::Note;

/// Longest reply head (HTTP headers, RESP header line) accepted.
const MAX_HEAD: usize = 64 * 1024;

pub enum Parsed {
    /// Nothing can be taken yet: wait for more bytes.
    Incomplete,
    /// The first `consumed` bytes belong to the reply in progress (a body
    /// being skipped); the reply is not finished. The rest stays for the
    /// next call, which gets it with the bytes that arrive meanwhile.
    Partial { consumed: usize },
    Done {
        consumed: usize,
        outcome: Result<Note, String>,
        /// The server said it will close after this reply.
        close: bool,
    },
}

pub trait Exchange {
    fn write_request(&mut self, out: &mut Vec<u8>);
    fn parse(&mut self, input: &[u8]) -> Parsed;
    /// Forgets the requests in flight (the connection was lost).
    fn reset(&mut self);
}

fn done(consumed: usize, outcome: Result<Note, String>) -> Parsed {
    Parsed::Done {
        consumed,
        outcome,
        close: false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [byte] => memchr::memchr(*byte, haystack),
        _ => memchr::memmem::find(haystack, needle),
    }
}

/// `value` (a header value) contains `word`, ignoring ASCII case.
fn contains_word(value: &[u8], word: &[u8]) -> bool {
    value
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(60)];
    format!("{:?}", String::from_utf8_lossy(cut))
}

/// A small fast generator (xorshift64*): keys and op mixes need spread, not
/// cryptographic quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Line echo: a `size`-byte line (letters that shift with every request,
/// then `\n`); the reply must be the same bytes. The 26 possible lines are
/// built once and shared, so a request is one copy and a check one compare.
pub struct Echo {
    lines: Arc<Vec<Vec<u8>>>,
    next: u64,
    in_flight: VecDeque<u8>,
}

impl Echo {
    /// The 26 lines of `size` bytes, one per shift of the alphabet.
    pub fn lines(size: usize) -> Arc<Vec<Vec<u8>>> {
        let lines = (0..26u64)
            .map(|shift| {
                let mut line: Vec<u8> = (0..size as u64 - 1)
                    .map(|i| b'a' + ((i + shift) % 26) as u8)
                    .collect();
                line.push(b'\n');
                line
            })
            .collect();
        Arc::new(lines)
    }

    pub fn new(lines: Arc<Vec<Vec<u8>>>, seed: u64) -> Echo {
        Echo {
            lines,
            next: seed,
            in_flight: VecDeque::new(),
        }
    }
}

impl Exchange for Echo {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        let shift = (self.next % 26) as u8;
        self.next = self.next.wrapping_add(1);
        out.extend_from_slice(&self.lines[shift as usize]);
        self.in_flight.push_back(shift);
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        let Some(&shift) = self.in_flight.front() else {
            return done(
                input.len(),
                Err(format!("unasked-for bytes {}", preview(input))),
            );
        };
        let line = &self.lines[shift as usize];
        let size = line.len();
        if input.len() < size {
            // A short line that already ended is wrong; otherwise wait.
            if let Some(end) = input.iter().position(|&b| b == b'\n') {
                self.in_flight.pop_front();
                return done(
                    end + 1,
                    Err(format!("echo of {} bytes for a {size}-byte line", end + 1)),
                );
            }
            return Parsed::Incomplete;
        }
        self.in_flight.pop_front();
        if &input[..size] == line.as_slice() {
            done(size, Ok(Note::None))
        } else {
            done(
                size,
                Err(format!(
                    "echo differs from the line sent: got {}",
                    preview(&input[..size])
                )),
            )
        }
    }

    fn reset(&mut self) {
        self.in_flight.clear();
    }
}

/// HTTP/1.1: the same request each time; the reply's status is counted and
/// its body skipped as it arrives (by Content-Length or chunked framing), as
/// wrk does: a body of any length costs no memory beyond the read chunk.
pub struct Http {
    spec: Arc<HttpSpec>,
    in_flight: usize,
    /// The reply whose head has been read and whose body is being skipped.
    reply: Option<Skipping>,
}

impl Http {
    pub fn new(spec: Arc<HttpSpec>) -> Http {
        Http {
            spec,
            in_flight: 0,
            reply: None,
        }
    }
}

/// Longest chunk size line accepted (hex digits and extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// A reply whose head is read: what it said, and the body left to skip.
struct Skipping {
    status: u16,
    close: bool,
    body: Body,
}

/// How the rest of a body is framed.
enum Body {
    /// This many bytes are left.
    Length(u64),
    Chunked(Chunk),
}

/// Where a chunked body is. Data is skipped as it arrives; only an
/// unfinished size or trailer line is left unconsumed (bounded).
#[derive(Clone, Copy)]
enum Chunk {
    Size,
    /// This many bytes of the current chunk are left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields, up to the empty line.
    Trailer,
}

impl Body {
    /// Skips what `input` holds of the body: how many bytes it took, and
    /// whether the body ended.
    fn skip(&mut self, input: &[u8]) -> Result<(usize, bool), String> {
        match self {
            Body::Length(left) => {
                let taken = (*left).min(input.len() as u64);
                *left -= taken;
                Ok((taken as usize, *left == 0))
            }
            Body::Chunked(chunk) => skip_chunked(chunk, input),
        }
    }
}

fn skip_chunked(chunk: &mut Chunk, input: &[u8]) -> Result<(usize, bool), String> {
    let mut at = 0;
    loop {
        let rest = &input[at..];
        match *chunk {
            Chunk::Size => {
                let Some(end) = find(rest, b"\r\n") else {
                    if rest.len() > MAX_CHUNK_LINE {
                        return Err("chunk size line too long".into());
                    }
                    return Ok((at, false));
                };
                let line = &rest[..end];
                let hex_end = line
                    .iter()
                    .position(|b| !b.is_ascii_hexdigit())
                    .unwrap_or(line.len());
                let hex = std::str::from_utf8(&line[..hex_end]).unwrap_or("");
                let size = u64::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad chunk size line {}", preview(line)))?;
                at += end + 2;
                *chunk = if size == 0 {
                    Chunk::Trailer
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(left) => {
                let taken = left.min(rest.len() as u64);
                at += taken as usize;
                if taken < left {
                    *chunk = Chunk::Data(left - taken);
                    return Ok((at, false));
                }
                *chunk = Chunk::DataEnd;
            }
            Chunk::DataEnd => {
                if rest.len() < 2 {
                    return Ok((at, false));
                }
                if &rest[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF".into());
                }
                at += 2;
                *chunk = Chunk::Size;
            }
            Chunk::Trailer => {
                let Some(end) = find(rest, b"\r\n") else {
                    if rest.len() > MAX_HEAD {
                        return Err("chunked trailer longer than 64 KiB".into());
                    }
                    return Ok((at, false));
                };
                at += end + 2;
                if end == 0 {
                    return Ok((at, true));
                }
            }
        }
    }
}

impl Http {
    /// Reads a reply head at the start of `input`: `Ok(None)` if it is not
    /// all there yet, else the reply and where its body starts. A reply
    /// with no body comes back with an empty `Length(0)` body.
    fn head(&self, input: &[u8]) -> Result<Option<(Skipping, usize)>, String> {
        let Some(head_end) = find(input, b"\r\n\r\n") else {
            if input.len() > MAX_HEAD {
                return Err("reply head longer than 64 KiB".into());
            }
            return Ok(None);
        };
        let head = &input[..head_end];
        let mut lines = head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().unwrap_or_default();
        let status = (status_line.starts_with(b"HTTP/1.") && status_line.len() >= 12)
            .then(|| std::str::from_utf8(&status_line[9..12]).ok())
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else {
            return Err(format!("bad status line {}", preview(status_line)));
        };
        let mut length = None;
        let mut chunked = false;
        let mut close = status_line.starts_with(b"HTTP/1.0");
        for line in lines {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let name = &line[..colon];
            let value = trim(&line[colon + 1..]);
            // Only three headers matter; their name lengths are 14, 17, 10.
            match name.len() {
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    let parsed = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok());
                    match parsed {
                        Some(n) => length = Some(n),
                        None => return Err(format!("bad Content-Length {}", preview(value))),
                    }
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    chunked = contains_word(value, b"chunked");
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    if contains_word(value, b"close") {
                        close = true;
                    } else if contains_word(value, b"keep-alive") {
                        close = false;
                    }
                }
                _ => {}
            }
        }
        let no_body = self.spec.head || status / 100 == 1 || status == 204 || status == 304;
        let body = if no_body {
            Body::Length(0)
        } else if chunked {
            Body::Chunked(Chunk::Size)
        } else if let Some(n) = length {
            Body::Length(n)
        } else {
            return Err(
                "reply without Content-Length or chunked body (read-until-close is not supported)"
                    .into(),
            );
        };
        let reply = Skipping {
            status,
            close,
            body,
        };
        Ok(Some((reply, head_end + 4)))
    }
}

impl Exchange for Http {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spec.request);
        self.in_flight += 1;
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        let mut at = 0;
        if self.reply.is_none() {
            match self.head(input) {
                Ok(None) => return Parsed::Incomplete,
                Ok(Some(_)) | Err(_) if self.in_flight == 0 => {
                    return done(
                        input.len(),
                        Err(format!("unasked-for reply {}", preview(input))),
                    );
                }
                Ok(Some((reply, body_start))) => {
                    self.reply = Some(reply);
                    at = body_start;
                }
                Err(e) => {
                    self.in_flight -= 1;
                    return done(input.len(), Err(e));
                }
            }
        }
        let Some(reply) = self.reply.as_mut() else {
            return Parsed::Incomplete;
        };
        match reply.body.skip(&input[at..]) {
            Ok((taken, false)) => Parsed::Partial {
                consumed: at + taken,
            },
            Ok((taken, true)) => {
                self.in_flight -= 1;
                let status = reply.status;
                let close = reply.close;
                self.reply = None;
                Parsed::Done {
                    consumed: at + taken,
                    outcome: Ok(Note::Status(status)),
                    close,
                }
            }
            Err(e) => {
                self.in_flight -= 1;
                self.reply = None;
                done(input.len(), Err(e))
            }
        }
    }

    fn reset(&mut self) {
        self.in_flight = 0;
        self.reply = None;
    }
}

/// RESP: SET and GET on random keys of a key space. The value of a key is
/// a function of the key, so any GET that finds a value can check it.
pub struct Resp {
    spec: Arc<RespSpec>,
    rng: Rng,
    count: u64,
    /// (is_set, key) of the requests in flight.
    in_flight: VecDeque<(bool, u64)>,
    number: String,
}

impl Resp {
    pub fn new(spec: Arc<RespSpec>, seed: u64) -> Resp {
        Resp {
            spec,
            rng: Rng::new(seed),
            count: seed,
            in_flight: VecDeque::new(),
            number: String::new(),
        }
    }

    /// The value stored under key number `key`.
    pub fn value_of(key: u64, size: usize) -> impl Iterator<Item = u8> {
        (0..size).map(move |i| b'a' + ((key + i as u64) % 26) as u8)
    }
}

fn push_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let length: usize = parts.iter().map(|p| p.len()).sum();
    out.push(b'$');
    out.extend_from_slice(length.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

impl Exchange for Resp {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        let spec = &*self.spec;
        let is_set = self.count % u64::from(spec.sets + spec.gets) < u64::from(spec.sets);
        self.count = self.count.wrapping_add(1);
        let key = self.rng.below(spec.keys);
        self.number.clear();
        self.number.push_str(&key.to_string());
        if is_set {
            out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
            push_bulk(out, &[spec.prefix.as_bytes(), self.number.as_bytes()]);
            out.push(b'$');
            out.extend_from_slice(spec.value_size.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend(Resp::value_of(key, spec.value_size));
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
            push_bulk(out, &[spec.prefix.as_bytes(), self.number.as_bytes()]);
        }
        self.in_flight.push_back((is_set, key));
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        let Some(line_end) = find(input, b"\r\n") else {
            if input.len() > MAX_HEAD {
                return done(input.len(), Err("RESP line longer than 64 KiB".into()));
            }
            return Parsed::Incomplete;
        };
        let Some(&(is_set, key)) = self.in_flight.front() else {
            return done(
                input.len(),
                Err(format!("unasked-for reply {}", preview(input))),
            );
        };
        let line = &input[..line_end];
        let after = line_end + 2;
        let outcome = match (line.first(), is_set) {
            (Some(b'-'), _) => Err(format!("error reply {}", preview(line))),
            (Some(b'+'), true) if line == b"+OK" => Ok(Note::Set),
            (Some(b'$'), false) if line == b"$-1" => Ok(Note::Miss),
            (Some(b'$'), false) => {
                let size = std::str::from_utf8(&line[1..])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok());
                let Some(size) = size else {
                    self.in_flight.pop_front();
                    return done(
                        input.len(),
                        Err(format!("bad bulk header {}", preview(line))),
                    );
                };
                if size != self.spec.value_size {
                    // Not the value SET: no need to wait for (and buffer)
                    // a value of any announced size.
                    self.in_flight.pop_front();
                    return done(
                        input.len(),
                        Err(format!(
                            "GET {}{key} returned {size} bytes (not the {} SET)",
                            self.spec.prefix, self.spec.value_size
                        )),
                    );
                }
                if input.len() < after + size + 2 {
                    return Parsed::Incomplete;
                }
                self.in_flight.pop_front();
                let value = &input[after..after + size];
                let expected = value
                    .iter()
                    .copied()
                    .eq(Resp::value_of(key, self.spec.value_size));
                let outcome = if expected {
                    Ok(Note::Hit)
                } else {
                    Err(format!(
                        "GET {}{key} returned {} (not the value SET)",
                        self.spec.prefix,
                        preview(value)
                    ))
                };
                return done(after + size + 2, outcome);
            }
            _ => Err(format!(
                "unexpected reply {} to {}",
                preview(line),
                if is_set { "SET" } else { "GET" }
            )),
        };
        self.in_flight.pop_front();
        done(after, outcome)
    }

    fn reset(&mut self) {
        self.in_flight.clear();
    }
}

/// Raw: a fixed payload; a reply ends after a delimiter or a byte count.
pub struct Raw {
    spec: Arc<RawSpec>,
    in_flight: usize,
    /// `--reply-bytes`: bytes of the reply in progress still to come (0:
    /// none started). They are skipped as they arrive.
    left: usize,
}

impl Raw {
    pub fn new(spec: Arc<RawSpec>) -> Raw {
        Raw {
            spec,
            in_flight: 0,
            left: 0,
        }
    }
}

impl Exchange for Raw {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spec.payload);
        self.in_flight += 1;
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        if self.in_flight == 0 {
            return done(
                input.len(),
                Err(format!("unasked-for reply {}", preview(input))),
            );
        }
        let consumed = match &self.spec.end {
            RawEnd::Bytes(n) => {
                if self.left == 0 {
                    self.left = *n;
                }
                let taken = self.left.min(input.len());
                self.left -= taken;
                if self.left > 0 {
                    return Parsed::Partial { consumed: taken };
                }
                taken
            }
            RawEnd::Delimiter(delimiter) => match find(input, delimiter) {
                Some(at) => at + delimiter.len(),
                None if input.len() > MAX_HEAD => {
                    return done(input.len(), Err("no delimiter in 64 KiB of reply".into()))
                }
                None => return Parsed::Incomplete,
            },
        };
        self.in_flight -= 1;
        done(consumed, Ok(Note::None))
    }

    fn reset(&mut self) {
        self.in_flight = 0;
        self.left = 0;
    }
}

/// Idle connections (`--hold`): never sends, any reply is unexpected.
pub struct Idle;

impl Exchange for Idle {
    fn write_request(&mut self, _out: &mut Vec<u8>) {}

    fn parse(&mut self, input: &[u8]) -> Parsed {
        done(
            input.len(),
            Err(format!("unasked-for bytes {}", preview(input))),
        )
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(parsed: Parsed) -> (usize, Result<Note, String>, bool) {
        match parsed {
            Parsed::Done {
                consumed,
                outcome,
                close,
            } => (consumed, outcome, close),
            Parsed::Incomplete | Parsed::Partial { .. } => panic!("not finished"),
        }
    }

    #[test]
    fn echo_round_trip_and_mismatch() {
        let mut echo = Echo::new(Echo::lines(8), 3);
        let mut out = Vec::new();
        echo.write_request(&mut out);
        echo.write_request(&mut out);
        assert_eq!(out.len(), 16);
        assert!(matches!(echo.parse(&out[..5]), Parsed::Incomplete));
        assert_eq!(full(echo.parse(&out)).1, Ok(Note::None));
        let mut wrong = out[8..].to_vec();
        wrong[0] ^= 1;
        assert!(full(echo.parse(&wrong)).1.is_err());
    }

    #[test]
    fn http_content_length_and_chunked() {
        let spec = Arc::new(HttpSpec {
            request: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            head: false,
        });
        let mut http = Http::new(spec);
        let mut out = Vec::new();
        http.write_request(&mut out);
        http.write_request(&mut out);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(matches!(http.parse(&reply[..10]), Parsed::Incomplete));
        // The head and the body so far are taken; the last byte ends it.
        let last = reply.len() - 1;
        assert!(matches!(
            http.parse(&reply[..last]),
            Parsed::Partial { consumed } if consumed == last
        ));
        assert_eq!(
            full(http.parse(&reply[last..])),
            (1, Ok(Note::Status(200)), false)
        );
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            full(http.parse(chunked)),
            (chunked.len(), Ok(Note::Status(404)), true)
        );
    }

    /// Feeds `bytes` in pieces of `piece` bytes as the engine does (what a
    /// parse leaves is kept and prefixed to the next piece). Returns the
    /// outcomes of the finished replies and the most bytes ever kept.
    fn feed(
        exchange: &mut dyn Exchange,
        bytes: &[u8],
        piece: usize,
    ) -> (Vec<Result<Note, String>>, usize) {
        let mut kept: Vec<u8> = Vec::new();
        let mut outcomes = Vec::new();
        let mut most_kept = 0;
        for part in bytes.chunks(piece) {
            kept.extend_from_slice(part);
            let mut at = 0;
            while at < kept.len() {
                match exchange.parse(&kept[at..]) {
                    Parsed::Incomplete => break,
                    Parsed::Partial { consumed } => {
                        at += consumed;
                        break;
                    }
                    Parsed::Done {
                        consumed, outcome, ..
                    } => {
                        at += consumed;
                        outcomes.push(outcome);
                    }
                }
            }
            kept.drain(..at);
            most_kept = most_kept.max(kept.len());
        }
        (outcomes, most_kept)
    }

    fn http_get() -> Http {
        Http::new(Arc::new(HttpSpec {
            request: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            head: false,
        }))
    }

    #[test]
    fn http_bodies_are_skipped_as_they_arrive() {
        let mut http = http_get();
        for _ in 0..3 {
            http.write_request(&mut Vec::new());
        }
        // A 1 MB body, then a chunked one, then a small one, in 1000-byte
        // and 1-byte pieces: nothing longer than a line is ever kept.
        let mut replies = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        replies.extend_from_slice(&vec![b'x'; 1_000_000]);
        replies.extend_from_slice(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
        replies.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        let (outcomes, most_kept) = feed(&mut http, &replies, 1000);
        assert_eq!(
            outcomes,
            vec![
                Ok(Note::Status(200)),
                Ok(Note::Status(201)),
                Ok(Note::Status(204))
            ]
        );
        assert!(most_kept < 1000, "kept {most_kept} bytes");

        let mut http = http_get();
        http.write_request(&mut Vec::new());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(feed(&mut http, chunked, 1).0, vec![Ok(Note::Status(200))]);
    }

    #[test]
    fn http_declared_huge_body_costs_no_memory() {
        let mut http = http_get();
        http.write_request(&mut Vec::new());
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\n\r\n";
        assert!(matches!(
            http.parse(head),
            Parsed::Partial { consumed } if consumed == head.len()
        ));
        let chunk = vec![0u8; 65536];
        for _ in 0..100 {
            assert!(matches!(
                http.parse(&chunk),
                Parsed::Partial { consumed: 65536 }
            ));
        }
        // Lost connection: the next reply starts afresh.
        http.reset();
        http.write_request(&mut Vec::new());
        let small = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(full(http.parse(small)).1, Ok(Note::Status(200)));
    }

    #[test]
    fn http_bad_chunked_framing_is_a_protocol_error() {
        let mut http = http_get();
        http.write_request(&mut Vec::new());
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY";
        assert!(full(http.parse(bad)).1.is_err());
        let mut http = http_get();
        http.write_request(&mut Vec::new());
        let mut long = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        long.extend_from_slice(&[b'1'; 2000]);
        assert!(full(http.parse(&long)).1.is_err());
    }

    #[test]
    fn raw_reply_bytes_are_skipped_as_they_arrive() {
        let mut raw = Raw::new(Arc::new(RawSpec {
            payload: b"x".to_vec(),
            end: RawEnd::Bytes(100_000),
        }));
        raw.write_request(&mut Vec::new());
        raw.write_request(&mut Vec::new());
        let (outcomes, most_kept) = feed(&mut raw, &vec![b'r'; 200_000], 4096);
        assert_eq!(outcomes, vec![Ok(Note::None), Ok(Note::None)]);
        assert_eq!(most_kept, 0);
    }

    #[test]
    fn resp_value_of_the_wrong_size_fails_without_waiting_for_it() {
        let spec = Arc::new(RespSpec {
            sets: 0,
            gets: 1,
            keys: 1,
            prefix: "k".into(),
            value_size: 4,
        });
        let mut resp = Resp::new(spec, 0);
        resp.write_request(&mut Vec::new());
        assert!(full(resp.parse(b"$4000000000\r\n")).1.is_err());
    }

    #[test]
    fn resp_set_then_get_checks_the_value() {
        let spec = Arc::new(RespSpec {
            sets: 1,
            gets: 1,
            keys: 1,
            prefix: "k".into(),
            value_size: 4,
        });
        let mut resp = Resp::new(spec, 0);
        let mut out = Vec::new();
        resp.write_request(&mut out);
        resp.write_request(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$4\r\nabcd\r\n"),
            "{text}"
        );
        assert!(text.ends_with("*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n"), "{text}");
        assert_eq!(full(resp.parse(b"+OK\r\n")).1, Ok(Note::Set));
        assert_eq!(full(resp.parse(b"$4\r\nabcd\r\n")).1, Ok(Note::Hit));
        resp.write_request(&mut Vec::new());
        resp.write_request(&mut Vec::new());
        assert!(full(resp.parse(b"-ERR no\r\n")).1.is_err());
        assert!(full(resp.parse(b"$4\r\nzzzz\r\n")).1.is_err());
    }

    #[test]
    fn raw_delimiter_and_bytes() {
        let mut raw = Raw::new(Arc::new(RawSpec {
            payload: b"PING\r\n".to_vec(),
            end: RawEnd::Delimiter(b"\r\n".to_vec()),
        }));
        raw.write_request(&mut Vec::new());
        assert!(matches!(raw.parse(b"+PO"), Parsed::Incomplete));
        assert_eq!(full(raw.parse(b"+PONG\r\nx")).0, 7);
    }
}
