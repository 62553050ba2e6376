//! A message body without its framing: Content-Length, chunked (RFC 9112
//! 7.1) or until the connection closes.
//!
//! [`BodyDecoder::decode`] is called with the bytes after the head (and
//! later with whatever the caller has left unconsumed plus what it read
//! since); each call returns at most one piece of body data, how many input
//! bytes it consumed (framing included) and whether the body is complete.
//! A call that consumes nothing and is not done needs more input.
//!
//! Chunked: a chunk-size line longer than `max_chunk_line`, a size that is
//! not hex or over 16 digits, data not followed by CRLF → 400; chunk
//! extensions are ignored; trailer fields are read and dropped, at most
//! `max_trailers` bytes of them (431). Every framing: more than `max_body`
//! bytes of data → 413, refused at the chunk-size line before the data.

use super::{valid_value, Error, Framing, Limits};

/// Where a body decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Content-Length: this many bytes are still to come.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data: this many bytes are still to come.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
    UntilClose,
    Done,
}

/// What one call of [`BodyDecoder::decode`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyStep<'a> {
    /// Input bytes used; the caller drops them from its buffer.
    pub consumed: usize,
    /// Body bytes found (a slice of the consumed input; may be empty).
    pub data: &'a [u8],
    /// The body is complete: what follows belongs to the next message.
    pub done: bool,
}

/// Takes a body out of its framing, bounded by the limits it was made with.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: State,
    received: u64,
    trailer_bytes: usize,
    max_body: u64,
    max_chunk_line: usize,
    max_trailers: usize,
    bad: fn(&'static str) -> Error,
}

impl BodyDecoder {
    /// A decoder for a request body (errors are 400s).
    pub fn new(framing: Framing, limits: &Limits) -> BodyDecoder {
        BodyDecoder::with_error(framing, limits, Error::BadRequest)
    }

    /// A decoder for a response body (errors are bad responses).
    pub fn for_response(framing: Framing, limits: &Limits) -> BodyDecoder {
        BodyDecoder::with_error(framing, limits, Error::BadResponse)
    }

    fn with_error(
        framing: Framing,
        limits: &Limits,
        bad: fn(&'static str) -> Error,
    ) -> BodyDecoder {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(length) => State::Length(length),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        BodyDecoder {
            state,
            received: 0,
            trailer_bytes: 0,
            max_body: limits.max_body,
            max_chunk_line: limits.max_chunk_line,
            max_trailers: limits.max_trailers,
            bad,
        }
    }

    /// The whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes returned so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next piece of body from the front of `input`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<BodyStep<'a>, Error> {
        let mut pos = 0;
        loop {
            let available = &input[pos..];
            match self.state {
                State::Done => return Ok(step(pos, &[], true)),
                State::Length(remaining) => {
                    let n = remaining.min(available.len() as u64);
                    self.state = if n == remaining {
                        State::Done
                    } else {
                        State::Length(remaining - n)
                    };
                    return Ok(self.data(pos, available, n));
                }
                State::UntilClose => {
                    if self.received + available.len() as u64 > self.max_body {
                        return Err(Error::PayloadTooLarge);
                    }
                    return Ok(self.data(pos, available, available.len() as u64));
                }
                State::ChunkData(remaining) => {
                    let n = remaining.min(available.len() as u64);
                    if n == 0 {
                        return Ok(step(pos, &[], false));
                    }
                    self.state = if n == remaining {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(remaining - n)
                    };
                    return Ok(self.data(pos, available, n));
                }
                State::ChunkEnd => match available {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(step(pos, &[], false)),
                    _ => return Err((self.bad)("chunk data not followed by CRLF")),
                },
                State::ChunkSize => {
                    let Some(line) =
                        self.line(available, self.max_chunk_line, "chunk size line too long")?
                    else {
                        return Ok(step(pos, &[], false));
                    };
                    pos += line.len() + 2;
                    let size = self.chunk_size(line)?;
                    if size == 0 {
                        self.state = State::Trailers;
                    } else if self.received.saturating_add(size) > self.max_body {
                        return Err(Error::PayloadTooLarge);
                    } else {
                        self.state = State::ChunkData(size);
                    }
                }
                State::Trailers => {
                    let room = self.max_trailers.saturating_sub(self.trailer_bytes);
                    let Some(line) = self.line(available, room, "")? else {
                        return Ok(step(pos, &[], false));
                    };
                    pos += line.len() + 2;
                    self.trailer_bytes += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(step(pos, &[], true));
                    }
                    if self.trailer_bytes > self.max_trailers {
                        return Err(Error::HeadersTooLarge(
                            "trailer fields larger than the limit",
                        ));
                    }
                    if line[0] == b' '
                        || line[0] == b'\t'
                        || !line.contains(&b':')
                        || !valid_value(line)
                    {
                        return Err((self.bad)("invalid trailer field"));
                    }
                }
            }
        }
    }

    /// Returns `n` bytes of `available` (which starts at input offset `pos`)
    /// as body data.
    fn data<'a>(&mut self, pos: usize, available: &'a [u8], n: u64) -> BodyStep<'a> {
        // n <= available.len(), so the cast is exact.
        let n = n as usize;
        self.received += n as u64;
        step(pos + n, &available[..n], self.state == State::Done)
    }

    /// The CRLF-terminated line at the front of `available`, without its
    /// CRLF; None if it is not complete. Longer than `max` → an error
    /// (`too_long` empty: the trailers' 431).
    fn line<'a>(
        &self,
        available: &'a [u8],
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<&'a [u8]>, Error> {
        let window = &available[..available.len().min(max.saturating_add(2))];
        let Some(newline) = memchr::memchr(b'\n', window) else {
            if window.len() > max.saturating_add(1) {
                return Err(if too_long.is_empty() {
                    Error::HeadersTooLarge("trailer fields larger than the limit")
                } else {
                    (self.bad)(too_long)
                });
            }
            return Ok(None);
        };
        if newline == 0 || window[newline - 1] != b'\r' {
            return Err((self.bad)("line not ended by CRLF"));
        }
        Ok(Some(&window[..newline - 1]))
    }

    /// `1*HEXDIG [BWS ";" extensions]`: the size, extensions ignored.
    fn chunk_size(&self, line: &[u8]) -> Result<u64, Error> {
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err((self.bad)("invalid chunk size"));
        }
        if digits > 16 {
            return Err((self.bad)("chunk size too large"));
        }
        let rest = &line[digits..];
        let after_space = rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(rest.len());
        if !(rest.is_empty() || rest[after_space..].starts_with(b";")) || !valid_value(rest) {
            return Err((self.bad)("invalid chunk size"));
        }
        let mut size: u64 = 0;
        for &b in &line[..digits] {
            // 16 hex digits fit in a u64.
            size = size << 4 | u64::from((b as char).to_digit(16).unwrap_or(0));
        }
        Ok(size)
    }
}

fn step(consumed: usize, data: &[u8], done: bool) -> BodyStep<'_> {
    BodyStep {
        consumed,
        data,
        done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::response::{write_chunk, write_last_chunk};
    use crate::proto::testing::Random;

    /// Feeds `input` in pieces of `piece` bytes; the body, or the error.
    fn run(
        framing: Framing,
        limits: &Limits,
        input: &[u8],
        piece: usize,
    ) -> Result<(Vec<u8>, usize), Error> {
        let mut decoder = BodyDecoder::new(framing, limits);
        let mut buffer = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut total_used = 0;
        loop {
            let step = decoder.decode(&buffer)?;
            body.extend_from_slice(step.data);
            let (consumed, done) = (step.consumed, step.done);
            total_used += consumed;
            buffer.drain(..consumed);
            if done {
                assert!(decoder.is_done());
                return Ok((body, total_used));
            }
            if consumed == 0 {
                if fed >= input.len() {
                    return Err(Error::BadRequest("input ended"));
                }
                let end = (fed + piece).min(input.len());
                buffer.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }

    #[test]
    fn content_length() {
        let limits = Limits::default();
        for piece in [1, 3, 100] {
            assert_eq!(
                run(Framing::Length(5), &limits, b"helloGET", piece).map(|r| r.0),
                Ok(b"hello".to_vec())
            );
        }
        assert_eq!(run(Framing::None, &limits, b"x", 1), Ok((vec![], 0)));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let input =
            b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\nX: y\r\n\r\nNEXT";
        for piece in [1, 2, 7, 1000] {
            assert_eq!(
                run(Framing::Chunked, &Limits::default(), input, piece),
                Ok((b"hello world".to_vec(), input.len() - 4)),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn malformed_chunked() {
        let limits = Limits {
            max_body: 10,
            max_chunk_line: 8,
            max_trailers: 20,
            ..Limits::default()
        };
        let cases: &[(&[u8], u16)] = &[
            (b"x\r\n", 400),
            (b"\r\n", 400),
            (b"5\nhello\r\n0\r\n\r\n", 400),
            (b"5\r\nhelloXX0\r\n\r\n", 400),
            (b"5 x\r\nhello\r\n", 400),
            (b"5;\x00\r\nhello\r\n", 400),
            (b"11111111111111111\r\n", 400),
            (b"1;aaaaaaaaaaaaaaa\r\n", 400),
            (b"b\r\n", 413),
            (b"6\r\nhello!\r\n5\r\n", 413),
            (b"0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", 431),
            (b"0\r\nnot a field\r\n\r\n", 400),
            (b"0\r\n folded: x\r\n\r\n", 400),
        ];
        for (input, status) in cases {
            let result = run(Framing::Chunked, &limits, input, 1);
            assert_eq!(
                result.map_err(|e| e.status()),
                Err(*status),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_round_trip_and_prefixes() {
        let mut random = Random::new(5);
        for _ in 0..200 {
            let mut body = Vec::new();
            let mut framed = Vec::new();
            for _ in 0..random.below(5) {
                let len = random.below(300) as usize;
                let piece = random.bytes(len);
                write_chunk(&mut framed, &piece);
                body.extend_from_slice(&piece);
            }
            write_last_chunk(&mut framed);
            let piece = 1 + random.below(50) as usize;
            assert_eq!(
                run(Framing::Chunked, &Limits::default(), &framed, piece),
                Ok((body, framed.len()))
            );
        }
    }

    #[test]
    fn until_close_is_bounded() {
        let limits = Limits {
            max_body: 4,
            ..Limits::default()
        };
        let mut decoder = BodyDecoder::for_response(Framing::UntilClose, &limits);
        let step = decoder.decode(b"abc").unwrap();
        assert_eq!(
            (step.consumed, step.data, step.done),
            (3, &b"abc"[..], false)
        );
        assert_eq!(decoder.decode(b"de"), Err(Error::PayloadTooLarge));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(9);
        let limits = Limits {
            max_chunk_line: 16,
            max_trailers: 32,
            ..Limits::default()
        };
        for _ in 0..20_000 {
            let len = random.below(80) as usize;
            let input = random.bytes_from(b"0123456789abcdefABCDEF;=\r\n: x", len);
            let mut decoder = BodyDecoder::new(Framing::Chunked, &limits);
            let mut at = 0;
            while let Ok(step) = decoder.decode(&input[at..]) {
                at += step.consumed;
                if step.consumed == 0 || step.done {
                    break;
                }
            }
        }
    }
}
