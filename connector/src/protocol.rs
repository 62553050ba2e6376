//! The built-in profiles as request writers and reply parsers.
//!
//! Contract of an [`Exchange`] (one per connection):
//! 1. The engine calls [`Exchange::write_request`] each time it sends; the
//!    exchange appends exactly one request to the output and remembers what
//!    it expects back (several requests may be in flight: pipelining).
//! 2. When bytes arrive the engine calls [`Exchange::parse`] with everything
//!    unparsed so far. The exchange looks for the reply to its oldest request
//!    in flight at the start of that input, and answers `Incomplete` (wait
//!    for more bytes) or `Done` with how many bytes the reply took.
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
    Incomplete,
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
/// its body skipped by Content-Length or chunked framing.
pub struct Http {
    spec: Arc<HttpSpec>,
    in_flight: usize,
}

impl Http {
    pub fn new(spec: Arc<HttpSpec>) -> Http {
        Http { spec, in_flight: 0 }
    }
}

/// The length of a chunked body at the start of `input` including its
/// trailer, `Ok(None)` if incomplete.
fn chunked_length(input: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(end) = find(&input[at..], b"\r\n") else {
            return if input.len() - at > 1024 {
                Err("chunk size line too long".into())
            } else {
                Ok(None)
            };
        };
        let line = &input[at..at + end];
        let hex_end = line
            .iter()
            .position(|b| !b.is_ascii_hexdigit())
            .unwrap_or(line.len());
        let hex = std::str::from_utf8(&line[..hex_end]).unwrap_or("");
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| format!("bad chunk size line {}", preview(line)))?;
        at += end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let Some(end) = find(&input[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if input.len() < at + size + 2 {
            return Ok(None);
        }
        if &input[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        at += size + 2;
    }
}

impl Exchange for Http {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spec.request);
        self.in_flight += 1;
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        let Some(head_end) = find(input, b"\r\n\r\n") else {
            if input.len() > MAX_HEAD {
                return done(input.len(), Err("reply head longer than 64 KiB".into()));
            }
            return Parsed::Incomplete;
        };
        if self.in_flight == 0 {
            return done(
                input.len(),
                Err(format!("unasked-for reply {}", preview(input))),
            );
        }
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
            self.in_flight -= 1;
            return done(
                input.len(),
                Err(format!("bad status line {}", preview(status_line))),
            );
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
                        .and_then(|v| v.parse::<usize>().ok());
                    match parsed {
                        Some(n) => length = Some(n),
                        None => {
                            self.in_flight -= 1;
                            return done(
                                input.len(),
                                Err(format!("bad Content-Length {}", preview(value))),
                            );
                        }
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
        let body_start = head_end + 4;
        let no_body = self.spec.head || status / 100 == 1 || status == 204 || status == 304;
        let body = if no_body {
            0
        } else if chunked {
            match chunked_length(&input[body_start..]) {
                Ok(Some(n)) => n,
                Ok(None) => return Parsed::Incomplete,
                Err(e) => {
                    self.in_flight -= 1;
                    return done(input.len(), Err(e));
                }
            }
        } else if let Some(n) = length {
            if input.len() < body_start + n {
                return Parsed::Incomplete;
            }
            n
        } else {
            self.in_flight -= 1;
            return done(
                input.len(),
                Err("reply without Content-Length or chunked body (read-until-close is not supported)".into()),
            );
        };
        self.in_flight -= 1;
        Parsed::Done {
            consumed: body_start + body,
            outcome: Ok(Note::Status(status)),
            close,
        }
    }

    fn reset(&mut self) {
        self.in_flight = 0;
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
                if input.len() < after + size + 2 {
                    return Parsed::Incomplete;
                }
                self.in_flight.pop_front();
                let value = &input[after..after + size];
                let expected = size == self.spec.value_size
                    && value
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
}

impl Raw {
    pub fn new(spec: Arc<RawSpec>) -> Raw {
        Raw { spec, in_flight: 0 }
    }
}

impl Exchange for Raw {
    fn write_request(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spec.payload);
        self.in_flight += 1;
    }

    fn parse(&mut self, input: &[u8]) -> Parsed {
        let consumed = match &self.spec.end {
            RawEnd::Bytes(n) if input.len() >= *n => *n,
            RawEnd::Bytes(_) => return Parsed::Incomplete,
            RawEnd::Delimiter(delimiter) => match find(input, delimiter) {
                Some(at) => at + delimiter.len(),
                None if input.len() > MAX_HEAD => {
                    return done(input.len(), Err("no delimiter in 64 KiB of reply".into()))
                }
                None => return Parsed::Incomplete,
            },
        };
        if self.in_flight == 0 {
            return done(
                input.len(),
                Err(format!("unasked-for reply {}", preview(input))),
            );
        }
        self.in_flight -= 1;
        done(consumed, Ok(Note::None))
    }

    fn reset(&mut self) {
        self.in_flight = 0;
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
            Parsed::Incomplete => panic!("incomplete"),
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
        assert!(matches!(
            http.parse(&reply[..reply.len() - 1]),
            Parsed::Incomplete
        ));
        assert_eq!(
            full(http.parse(reply)),
            (reply.len(), Ok(Note::Status(200)), false)
        );
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            full(http.parse(chunked)),
            (chunked.len(), Ok(Note::Status(404)), true)
        );
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
