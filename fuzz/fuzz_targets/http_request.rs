//! HTTP/1.1 requests as a server reads them: the head
//! (`lunet_core::proto::http::parse_request`), then the body through a
//! `BodyDecoder` (Content-Length or chunked), with small limits.
//!
//! Invariants:
//! - head `Done(request, n)`: n == request.head_len <= input length, the
//!   same request from `input[..n]` alone, the path and query are pieces of
//!   the target (origin-form), a Content-Length body within `max_body`;
//! - head `NeedMore { at_least }`: at_least > input length;
//! - a prefix of a parsed head is "need more", never an error (every
//!   prefix of a short head, eight drawn per input of a long one);
//! - body: each step consumes no more than it was given, returns data that
//!   is part of what it consumed, and `received()` counts that data; the
//!   body never exceeds `max_body`; a Content-Length body that completes
//!   has exactly that length;
//! - the same bytes fed in pieces (the caller keeps what was not consumed
//!   and appends what it reads next) give the same body and the same end
//!   (complete, incomplete, or the same error) as fed whole, having
//!   consumed as much (unless it failed);
//! - a completed body written back as chunks decodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_core::proto::http::response::{write_chunk, write_last_chunk};
use lunet_core::proto::http::{parse_request, BodyDecoder, Error, Framing, Limits, Progress};
use lunet_fuzz::{prefix_lengths, Pieces};

fn limits() -> Limits {
    Limits {
        max_request_line: 128,
        max_headers: 8,
        max_head: 512,
        max_body: 1024,
        max_chunk_line: 32,
        max_trailers: 128,
    }
}

/// How a body read ended.
#[derive(Debug)]
struct Body {
    data: Vec<u8>,
    /// Input bytes consumed, framing included.
    consumed: usize,
    /// Complete (true) or waiting for more input (false); or the error.
    end: Result<bool, Error>,
}

/// One `decode` call, with the invariants every step must keep.
fn step(decoder: &mut BodyDecoder, input: &[u8], body: &mut Body, limits: &Limits) -> bool {
    let before = decoder.received();
    match decoder.decode(input) {
        Err(error) => {
            body.end = Err(error);
            false
        }
        Ok(step) => {
            assert!(
                step.consumed <= input.len(),
                "body step consumed {} of {}",
                step.consumed,
                input.len()
            );
            assert!(
                step.data.len() <= step.consumed,
                "body data longer than what was consumed"
            );
            if !step.data.is_empty() {
                let start = step.data.as_ptr() as usize - input.as_ptr() as usize;
                assert!(
                    start + step.data.len() <= step.consumed,
                    "body data outside the consumed input"
                );
            }
            assert_eq!(
                decoder.received(),
                before + step.data.len() as u64,
                "received()"
            );
            assert!(decoder.received() <= limits.max_body, "body over max_body");
            assert_eq!(step.done, decoder.is_done(), "done and is_done() disagree");
            body.data.extend_from_slice(step.data);
            body.consumed += step.consumed;
            body.end = Ok(step.done);
            // Go on while progress is made and the body is not complete.
            !step.done && (step.consumed > 0 || !step.data.is_empty())
        }
    }
}

fn read_whole(framing: Framing, input: &[u8], limits: &Limits) -> Body {
    let mut decoder = BodyDecoder::new(framing, limits);
    let mut body = Body {
        data: Vec::new(),
        consumed: 0,
        end: Ok(false),
    };
    while step(&mut decoder, &input[body.consumed..], &mut body, limits) {}
    body
}

fn read_in_pieces(framing: Framing, input: &[u8], limits: &Limits, pieces: &mut Pieces) -> Body {
    let mut decoder = BodyDecoder::new(framing, limits);
    let mut body = Body {
        data: Vec::new(),
        consumed: 0,
        end: Ok(false),
    };
    let mut buffer: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let take = pieces.next_size().min(input.len() - fed);
        buffer.extend_from_slice(&input[fed..fed + take]);
        fed += take;
        loop {
            let consumed_before = body.consumed;
            let go_on = step(&mut decoder, &buffer, &mut body, limits);
            buffer.drain(..body.consumed - consumed_before);
            if !go_on {
                break;
            }
        }
        if body.end != Ok(false) || fed == input.len() {
            return body;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let request = match parse_request(data, &limits) {
        Err(_) => return,
        Ok(Progress::NeedMore { at_least }) => {
            assert!(
                at_least > data.len(),
                "need more {at_least} of {}",
                data.len()
            );
            return;
        }
        Ok(Progress::Done(request, consumed)) => {
            assert_eq!(consumed, request.head_len);
            assert!(consumed <= data.len() && consumed <= limits.max_head);
            request
        }
    };
    let head_len = request.head_len;
    match parse_request(&data[..head_len], &limits) {
        Ok(Progress::Done(alone, n)) if n == head_len => {
            assert_eq!(alone, request, "the head depends on what follows it")
        }
        other => panic!("the head alone gave {other:?}"),
    }
    let mut pieces = Pieces::new(data);
    for len in prefix_lengths(head_len, &mut pieces) {
        match parse_request(&data[..len], &limits) {
            Ok(Progress::NeedMore { at_least }) => {
                assert!(at_least > len, "prefix {len}: need more {at_least}")
            }
            other => panic!("prefix {len} of a head of {head_len} bytes gave {other:?}"),
        }
    }
    if request.target.starts_with('/') {
        assert!(
            request.target.starts_with(request.path),
            "path is not the target's start"
        );
        if let Some(query) = request.query {
            assert!(request.target.ends_with(query) && request.target.contains('?'));
        }
    }
    if let Framing::Length(length) = request.framing {
        assert!(
            length > 0 && length <= limits.max_body,
            "Content-Length {length}"
        );
    }

    let rest = &data[head_len..];
    let whole = read_whole(request.framing, rest, &limits);
    let split = read_in_pieces(request.framing, rest, &limits, &mut pieces);
    assert_eq!(
        (&whole.data, &whole.end),
        (&split.data, &split.end),
        "the body fed whole and in pieces differ"
    );
    // After an error the connection closes: what was consumed before it
    // does not matter (and depends on where the pieces were cut).
    if whole.end.is_ok() {
        assert_eq!(
            whole.consumed, split.consumed,
            "consumed, whole and in pieces"
        );
    }
    if whole.end == Ok(true) {
        if let Framing::Length(length) = request.framing {
            assert_eq!(
                whole.data.len() as u64,
                length,
                "a complete body of the wrong length"
            );
        }
        let mut chunked = Vec::new();
        write_chunk(&mut chunked, &whole.data);
        write_last_chunk(&mut chunked);
        let again = read_whole(Framing::Chunked, &chunked, &limits);
        assert_eq!(again.data, whole.data, "chunked round trip");
        assert_eq!(again.end, Ok(true));
        assert_eq!(again.consumed, chunked.len());
    }
});
