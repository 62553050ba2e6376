//! WebSocket frames (`lunet_core::proto::websocket::MessageDecoder`): the
//! first byte picks the role (even: server, reading masked frames; odd:
//! client), the rest is a stream of frames, with small limits.
//!
//! Invariants:
//! - `Done(_, n)`: 0 < n <= input length; `NeedMore { at_least }`:
//!   at_least > input length;
//! - a message keeps the limits: control payloads at most 125 bytes, close
//!   codes that a peer may send, data messages at most `max_message`;
//! - the same bytes fed in pieces (the caller keeps what was not consumed
//!   and appends what it reads next) give the same messages and the same
//!   end (waiting for more, or the same error) as fed whole;
//! - each message written back as one frame by the other role
//!   (`write_frame`, `write_close`) decodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_core::proto::websocket::{
    valid_close_code, write_close, write_frame, Error, Limits, Message, MessageDecoder, Opcode,
    Role,
};
use lunet_core::proto::Progress;
use lunet_fuzz::Pieces;

fn limits() -> Limits {
    Limits {
        max_frame: 256,
        max_message: 1024,
    }
}

/// What a stream decoded to: its messages, then how it ended (None: it
/// waits for more input).
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    messages: Vec<Message>,
    end: Option<Error>,
}

/// Decodes from the front of `buffer` until it needs more or fails;
/// returns the bytes consumed.
fn drain(decoder: &mut MessageDecoder, buffer: &[u8], decoded: &mut Decoded) -> usize {
    let mut at = 0;
    loop {
        let rest = &buffer[at..];
        match decoder.decode(rest) {
            Err(error) => {
                decoded.end = Some(error);
                return at;
            }
            Ok(Progress::NeedMore { at_least }) => {
                assert!(
                    at_least > rest.len(),
                    "need more {at_least} of {}",
                    rest.len()
                );
                return at;
            }
            Ok(Progress::Done(message, n)) => {
                assert!(n > 0 && n <= rest.len(), "consumed {n} of {}", rest.len());
                at += n;
                if let Some(message) = message {
                    check_limits(&message);
                    decoded.messages.push(message);
                }
            }
        }
    }
}

fn check_limits(message: &Message) {
    let max = limits().max_message as usize;
    match message {
        Message::Text(text) => assert!(text.len() <= max, "text message over the limit"),
        Message::Binary(bytes) => assert!(bytes.len() <= max, "binary message over the limit"),
        Message::Ping(bytes) | Message::Pong(bytes) => {
            assert!(bytes.len() <= 125, "control frame over 125 bytes")
        }
        Message::Close(None) => {}
        Message::Close(Some((code, reason))) => {
            assert!(valid_close_code(*code), "close code {code}");
            assert!(reason.len() <= 123, "close reason over 123 bytes");
        }
    }
}

fn decode_whole(role: Role, input: &[u8]) -> Decoded {
    let mut decoder = MessageDecoder::new(role, limits());
    let mut decoded = Decoded {
        messages: Vec::new(),
        end: None,
    };
    drain(&mut decoder, input, &mut decoded);
    decoded
}

fn decode_in_pieces(role: Role, input: &[u8], pieces: &mut Pieces) -> Decoded {
    let mut decoder = MessageDecoder::new(role, limits());
    let mut decoded = Decoded {
        messages: Vec::new(),
        end: None,
    };
    let mut buffer: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < input.len() && decoded.end.is_none() {
        let take = pieces.next_size().min(input.len() - fed);
        buffer.extend_from_slice(&input[fed..fed + take]);
        fed += take;
        let consumed = drain(&mut decoder, &buffer, &mut decoded);
        buffer.drain(..consumed);
    }
    decoded
}

/// `message` as one frame from the peer of `role`.
fn write_back(role: Role, message: &Message, out: &mut Vec<u8>) {
    // A client masks what it sends to a server.
    let mask = (role == Role::Server).then_some([0x37, 0xfa, 0x21, 0x3d]);
    match message {
        Message::Text(text) => write_frame(out, true, Opcode::Text, text.as_bytes(), mask),
        Message::Binary(bytes) => write_frame(out, true, Opcode::Binary, bytes, mask),
        Message::Ping(bytes) => write_frame(out, true, Opcode::Ping, bytes, mask),
        Message::Pong(bytes) => write_frame(out, true, Opcode::Pong, bytes, mask),
        Message::Close(None) => write_frame(out, true, Opcode::Close, &[], mask),
        Message::Close(Some((code, reason))) => write_close(out, *code, reason, mask),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let role = if selector & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let whole = decode_whole(role, stream);
    let mut pieces = Pieces::new(data);
    let split = decode_in_pieces(role, stream, &mut pieces);
    assert_eq!(whole, split, "the stream fed whole and in pieces differs");

    for message in &whole.messages {
        let mut frame = Vec::new();
        write_back(role, message, &mut frame);
        let mut decoder = MessageDecoder::new(role, limits());
        match decoder.decode(&frame) {
            Ok(Progress::Done(Some(again), n)) if n == frame.len() => {
                assert_eq!(&again, message, "write_frame round trip")
            }
            // A data message may be larger than one frame may be.
            Err(Error::TooBig("frame")) if frame.len() > limits().max_frame as usize => {}
            other => panic!("{message:?} written as {frame:?} gave {other:?}"),
        }
    }
});
