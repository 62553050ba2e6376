//! WebSocket (RFC 6455) without IO: the opening handshake, frames, and
//! messages assembled from fragments.
//!
//! Handshake. A server checks an upgrade request with [`check_upgrade`]
//! (GET, HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`,
//! `Sec-WebSocket-Version: 13`, a key that is 16 bytes in base64) and
//! answers with [`write_accept`]; a client sends [`write_client_request`]
//! with a key made by [`client_key`] from 16 random bytes it supplies, and
//! checks the answer with [`check_accept`]. `Sec-WebSocket-Accept` is
//! base64(SHA-1(key + GUID)) ([`accept_key`]).
//!
//! Frames. [`parse_frame_head`] reads one frame header; [`MessageDecoder`]
//! takes whole frames from a buffer and gives back messages, enforcing:
//!
//! 1. masking: client-to-server frames must be masked, server-to-client
//!    frames must not be (the decoder is told its [`Role`]);
//! 2. no reserved bits (no extension is negotiated) and no reserved opcode;
//! 3. control frames (close, ping, pong) at most 125 bytes and never
//!    fragmented; they may arrive between the fragments of a message;
//! 4. a continuation only inside a fragmented message, a new text or binary
//!    frame only outside one;
//! 5. a 64-bit length with its top bit clear; a frame's payload at most
//!    `max_frame` bytes and a message at most `max_message` across its
//!    fragments (1009), checked from the header before the payload arrives;
//! 6. a close frame's code within 1000-1014 (less 1004, 1005, 1006) or
//!    3000-4999, its reason UTF-8, never a 1-byte payload; text messages
//!    UTF-8 (checked when the message is complete) (1007).
//!
//! A violation is an [`Error`] whose [`Error::close_code`] is the code to
//! close with. [`write_frame`] encodes a frame, masked by a client.

use super::Progress;

/// The GUID of RFC 6455 1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Which end of the connection this is: a server reads masked frames and
/// writes unmasked ones, a client the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Frame opcodes (RFC 6455 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Bounds on what a peer may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame: u64,
    /// Largest message, all its fragments together.
    pub max_message: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame: 1024 * 1024,
            max_message: 4 * 1024 * 1024,
        }
    }
}

/// A broken rule of the protocol; the connection is closed with
/// [`Error::close_code`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in a {0}")]
    InvalidUtf8(&'static str),
    #[error("{0} larger than the limit")]
    TooBig(&'static str),
}

impl Error {
    /// 1002 (protocol error), 1007 (invalid payload data) or 1009 (message
    /// too big).
    pub fn close_code(&self) -> u16 {
        match self {
            Error::Protocol(_) => 1002,
            Error::InvalidUtf8(_) => 1007,
            Error::TooBig(_) => 1009,
        }
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header (2 to 14).
    pub header_len: usize,
    pub payload_len: u64,
}

/// Reads the frame header at the front of `input` and checks rules 1, 2, 3
/// and 5 (frame size) of the module header.
pub fn parse_frame_head(
    input: &[u8],
    role: Role,
    limits: &Limits,
) -> Result<Progress<FrameHead>, Error> {
    let need = |n: usize| Ok(Progress::NeedMore { at_least: n });
    let [first, second, ..] = *input else {
        return need(2);
    };
    if first & 0x70 != 0 {
        return Err(Error::Protocol("reserved bits set"));
    }
    let opcode = Opcode::from_bits(first & 0x0f).ok_or(Error::Protocol("reserved opcode"))?;
    let fin = first & 0x80 != 0;
    let masked = second & 0x80 != 0;
    if masked != (role == Role::Server) {
        return Err(Error::Protocol(if masked {
            "masked frame from a server"
        } else {
            "unmasked frame from a client"
        }));
    }
    let (payload_len, mut header_len) = match second & 0x7f {
        126 => {
            let Some(bytes) = input.get(2..4) else {
                return need(4);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = input.get(2..10) else {
                return need(10);
            };
            let mut array = [0u8; 8];
            array.copy_from_slice(bytes);
            let length = u64::from_be_bytes(array);
            if length >> 63 != 0 {
                return Err(Error::Protocol("64-bit length with its top bit set"));
            }
            (length, 10)
        }
        short => (u64::from(short), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(Error::Protocol("fragmented control frame"));
        }
        if payload_len > 125 {
            return Err(Error::Protocol("control frame over 125 bytes"));
        }
    }
    if payload_len > limits.max_frame {
        return Err(Error::TooBig("frame"));
    }
    let mask = if masked {
        let Some(bytes) = input.get(header_len..header_len + 4) else {
            return need(header_len + 4);
        };
        header_len += 4;
        Some([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        None
    };
    let head = FrameHead {
        fin,
        opcode,
        mask,
        header_len,
        payload_len,
    };
    Ok(Progress::Done(head, header_len))
}

/// XORs `bytes` with the mask, `offset` bytes into the payload.
pub fn apply_mask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) & 3];
    }
}

/// A complete message, or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer's close: (code, reason), or None for a close without a
    /// code.
    Close(Option<(u16, String)>),
}

/// Assembles messages from frames (rules 1-6 of the module header).
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    limits: Limits,
    /// The opcode of the fragmented message in progress, if any.
    fragmented: Option<Opcode>,
    /// The payload of that message so far.
    partial: Vec<u8>,
}

impl MessageDecoder {
    pub fn new(role: Role, limits: Limits) -> MessageDecoder {
        MessageDecoder {
            role,
            limits,
            fragmented: None,
            partial: Vec::new(),
        }
    }

    /// Takes one whole frame from the front of `input`. `Done(Some(m), n)`:
    /// a message; `Done(None, n)`: a fragment was stored; either way `n`
    /// bytes were consumed. After an error the connection must be closed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress<Option<Message>>, Error> {
        let head = match parse_frame_head(input, self.role, &self.limits)? {
            Progress::Done(head, _) => head,
            Progress::NeedMore { at_least } => return Ok(Progress::NeedMore { at_least }),
        };
        match (head.opcode, self.fragmented) {
            (Opcode::Continuation, None) => {
                return Err(Error::Protocol("continuation outside a message"))
            }
            (Opcode::Text | Opcode::Binary, Some(_)) => {
                return Err(Error::Protocol("new message inside a fragmented one"))
            }
            _ => {}
        }
        let data_opcode = if head.opcode == Opcode::Continuation {
            self.fragmented
        } else {
            Some(head.opcode)
        };
        if !head.opcode.is_control()
            && self.partial.len() as u64 + head.payload_len > self.limits.max_message
        {
            return Err(Error::TooBig("message"));
        }
        // payload_len <= max_frame, checked by parse_frame_head; a usize
        // holds it wherever the frame fits in memory.
        let Some(end) = usize::try_from(head.payload_len)
            .ok()
            .and_then(|n| n.checked_add(head.header_len))
        else {
            return Err(Error::TooBig("frame"));
        };
        if input.len() < end {
            return Ok(Progress::NeedMore { at_least: end });
        }
        let payload = &input[head.header_len..end];
        let unmask = |bytes: &mut [u8], offset: usize| {
            if let Some(mask) = head.mask {
                apply_mask(bytes, mask, offset);
            }
        };

        if head.opcode.is_control() {
            let mut bytes = payload.to_vec();
            unmask(&mut bytes, 0);
            let message = match head.opcode {
                Opcode::Ping => Message::Ping(bytes),
                Opcode::Pong => Message::Pong(bytes),
                _ => Message::Close(parse_close(&bytes)?),
            };
            return Ok(Progress::Done(Some(message), end));
        }

        let opcode = data_opcode.unwrap_or(Opcode::Binary);
        let bytes = if head.fin && self.fragmented.is_none() {
            let mut bytes = payload.to_vec();
            unmask(&mut bytes, 0);
            bytes
        } else {
            let start = self.partial.len();
            self.partial.extend_from_slice(payload);
            unmask(&mut self.partial[start..], 0);
            if !head.fin {
                self.fragmented = Some(opcode);
                return Ok(Progress::Done(None, end));
            }
            self.fragmented = None;
            std::mem::take(&mut self.partial)
        };
        let message = if opcode == Opcode::Text {
            Message::Text(String::from_utf8(bytes).map_err(|_| Error::InvalidUtf8("text message"))?)
        } else {
            Message::Binary(bytes)
        };
        Ok(Progress::Done(Some(message), end))
    }
}

/// Whether a peer may send this close code (RFC 6455 7.4).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(Error::Protocol("close frame with a 1-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !valid_close_code(code) {
                return Err(Error::Protocol("invalid close code"));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| Error::InvalidUtf8("close reason"))?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// Appends one frame. `mask`: the 4 random bytes a client masks with;
/// None for a server.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.push(u8::from(fin) << 7 | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let payload_start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[payload_start..], key, 0);
    }
}

/// A close frame with a code and a reason (cut to fit 125 bytes, at a
/// character boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    write_frame(out, true, Opcode::Close, &payload, mask);
}

/// Why an opening handshake failed. `status` is what a server answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("websocket handshake: {reason}")]
pub struct HandshakeError {
    pub status: u16,
    pub reason: &'static str,
}

fn refuse(status: u16, reason: &'static str) -> HandshakeError {
    HandshakeError { status, reason }
}

/// Checks an upgrade request; its Sec-WebSocket-Key on success. A 426
/// answer should carry `Sec-WebSocket-Version: 13`.
pub fn check_upgrade<'a>(request: &super::http::Request<'a>) -> Result<&'a [u8], HandshakeError> {
    use super::http::{has_token, Method, Version};
    if request.kind != Method::Get || request.version != Version::Http11 {
        return Err(refuse(400, "an upgrade needs GET and HTTP/1.1"));
    }
    let connection_upgrade = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection") && has_token(h.value, "upgrade"));
    let upgrade_websocket = request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade") && has_token(h.value, "websocket"));
    if !connection_upgrade || !upgrade_websocket {
        return Err(refuse(400, "not a websocket upgrade"));
    }
    if request.header("sec-websocket-version") != Some(b"13") {
        return Err(refuse(426, "Sec-WebSocket-Version must be 13"));
    }
    let key = request
        .header("sec-websocket-key")
        .ok_or(refuse(400, "no Sec-WebSocket-Key"))?;
    if !is_base64_of_16_bytes(key) {
        return Err(refuse(400, "Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    Ok(key)
}

fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut hash = sha1_smol::Sha1::new();
    hash.update(key);
    hash.update(GUID);
    base64(&hash.digest().bytes())
}

/// A server's 101 answer; `protocol` is the subprotocol it picked, if any
/// (a token the caller chose from the request's list).
pub fn write_accept(out: &mut Vec<u8>, key: &[u8], protocol: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A client's key: 16 random bytes (the caller's) in base64.
pub fn client_key(random: [u8; 16]) -> String {
    base64(&random)
}

/// A client's upgrade request for `path` on `host`.
pub fn write_client_request(
    out: &mut Vec<u8>,
    host: &str,
    path: &str,
    key: &str,
) -> Result<(), super::http::response::WriteError> {
    use super::http::response::{write_header, write_request_line};
    write_request_line(out, "GET", path)?;
    write_header(out, b"Host", host.as_bytes())?;
    out.extend_from_slice(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
    );
    write_header(out, b"Sec-WebSocket-Key", key.as_bytes())?;
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Checks a server's answer to the upgrade request sent with `key`.
pub fn check_accept(response: &super::http::Response<'_>, key: &str) -> Result<(), HandshakeError> {
    use super::http::has_token;
    if response.status != 101 {
        return Err(refuse(
            response.status,
            "the server did not switch protocols",
        ));
    }
    let upgrade = response
        .header("upgrade")
        .is_some_and(|v| has_token(v, "websocket"));
    let connection = response
        .header("connection")
        .is_some_and(|v| has_token(v, "upgrade"));
    if !upgrade || !connection {
        return Err(refuse(502, "the answer is not a websocket upgrade"));
    }
    if response.header("sec-websocket-accept") != Some(accept_key(key.as_bytes()).as_bytes()) {
        return Err(refuse(502, "wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = u32::from(group[0]) << 16
            | u32::from(*group.get(1).unwrap_or(&0)) << 8
            | u32::from(*group.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::{self, parse_request, parse_response};
    use crate::proto::testing::Random;

    const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

    fn server() -> MessageDecoder {
        MessageDecoder::new(Role::Server, Limits::default())
    }

    /// Decodes all of `input`; the messages, or the first error.
    fn decode_all(decoder: &mut MessageDecoder, input: &[u8]) -> Result<Vec<Message>, Error> {
        let mut messages = Vec::new();
        let mut at = 0;
        while at < input.len() {
            match decoder.decode(&input[at..])? {
                Progress::Done(message, used) => {
                    messages.extend(message);
                    at += used;
                }
                Progress::NeedMore { .. } => panic!("need more at {at}"),
            }
        }
        Ok(messages)
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 5.7: a masked "Hello" from a client.
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&mut server(), &masked),
            Ok(vec![Message::Text("Hello".into())])
        );
        // Unmasked "Hello" in two fragments, from a server.
        let fragments = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        let mut client = MessageDecoder::new(Role::Client, Limits::default());
        assert_eq!(
            decode_all(&mut client, &fragments),
            Ok(vec![Message::Text("Hello".into())])
        );
        // The handshake example of RFC 6455 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn control_frames_between_fragments() {
        let mut input = Vec::new();
        write_frame(&mut input, false, Opcode::Binary, b"ab", MASK);
        write_frame(&mut input, true, Opcode::Ping, b"p", MASK);
        write_frame(&mut input, false, Opcode::Continuation, b"cd", MASK);
        write_frame(&mut input, true, Opcode::Continuation, b"e", MASK);
        write_close(&mut input, 1000, "bye", MASK);
        assert_eq!(
            decode_all(&mut server(), &input),
            Ok(vec![
                Message::Ping(b"p".to_vec()),
                Message::Binary(b"abcde".to_vec()),
                Message::Close(Some((1000, "bye".into()))),
            ])
        );
    }

    #[test]
    fn broken_rules_get_their_close_code() {
        let frame = |fin: bool, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>| {
            let mut out = Vec::new();
            write_frame(&mut out, fin, opcode, payload, mask);
            out
        };
        let mut reserved = frame(true, Opcode::Text, b"x", MASK);
        reserved[0] |= 0x40;
        let mut bad_opcode = frame(true, Opcode::Text, b"x", MASK);
        bad_opcode[0] = 0x83;
        let mut top_bit = vec![0x82, 0xff];
        top_bit.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 1]);
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "unmasked from a client",
                frame(true, Opcode::Text, b"x", None),
                1002,
            ),
            ("reserved bit", reserved, 1002),
            ("reserved opcode", bad_opcode, 1002),
            (
                "fragmented ping",
                frame(false, Opcode::Ping, b"x", MASK),
                1002,
            ),
            (
                "long ping",
                frame(true, Opcode::Ping, &[0; 126], MASK),
                1002,
            ),
            (
                "lone continuation",
                frame(true, Opcode::Continuation, b"x", MASK),
                1002,
            ),
            ("64-bit top bit", top_bit, 1002),
            ("1-byte close", frame(true, Opcode::Close, b"x", MASK), 1002),
            (
                "close code 1005",
                frame(true, Opcode::Close, &1005u16.to_be_bytes(), MASK),
                1002,
            ),
            (
                "close code 999",
                frame(true, Opcode::Close, &999u16.to_be_bytes(), MASK),
                1002,
            ),
            (
                "close code 5000",
                frame(true, Opcode::Close, &5000u16.to_be_bytes(), MASK),
                1002,
            ),
            (
                "close reason",
                frame(true, Opcode::Close, &[0x03, 0xe8, 0xff], MASK),
                1007,
            ),
            ("text", frame(true, Opcode::Text, &[b'a', 0xc3], MASK), 1007),
            (
                "surrogate in text",
                frame(true, Opcode::Text, &[0xed, 0xa0, 0x80], MASK),
                1007,
            ),
        ];
        for (what, input, code) in cases {
            let result = decode_all(&mut server(), &input);
            assert_eq!(result.map_err(|e| e.close_code()), Err(code), "{what}");
        }
        let mut two_starts = frame(false, Opcode::Text, b"a", MASK);
        two_starts.extend(frame(true, Opcode::Text, b"b", MASK));
        assert_eq!(
            decode_all(&mut server(), &two_starts),
            Err(Error::Protocol("new message inside a fragmented one"))
        );
        let mut client = MessageDecoder::new(Role::Client, Limits::default());
        assert!(decode_all(&mut client, &frame(true, Opcode::Text, b"x", MASK)).is_err());
        for code in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(valid_close_code(code), "{code}");
        }
        for code in [0, 1004, 1005, 1006, 1015, 2000, 2999, 5000] {
            assert!(!valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn sizes_are_bounded_before_the_payload_arrives() {
        let limits = Limits {
            max_frame: 100,
            max_message: 150,
        };
        let mut decoder = MessageDecoder::new(Role::Server, limits.clone());
        // Only the header of a 101-byte frame.
        assert_eq!(
            decoder.decode(&[0x82, 0x80 | 101]),
            Err(Error::TooBig("frame"))
        );
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        let mut input = Vec::new();
        write_frame(&mut input, false, Opcode::Binary, &[1; 100], MASK);
        let header_of_next = [0x80, 0x80 | 51, 1, 2, 3, 4];
        assert_eq!(
            decoder.decode(&input),
            Ok(Progress::Done(None, input.len()))
        );
        assert_eq!(
            decoder.decode(&header_of_next),
            Err(Error::TooBig("message"))
        );
    }

    #[test]
    fn frames_round_trip_and_prefixes_need_more() {
        let mut random = Random::new(21);
        for _ in 0..300 {
            let len = [0usize, 1, 125, 126, 127, 65_535, 65_536][random.below(7) as usize]
                + random.below(3) as usize;
            let payload = random.bytes(len);
            let mask = random.bytes(4);
            let mut input = Vec::new();
            write_frame(
                &mut input,
                true,
                Opcode::Binary,
                &payload,
                Some([mask[0], mask[1], mask[2], mask[3]]),
            );
            assert_eq!(
                decode_all(&mut server(), &input),
                Ok(vec![Message::Binary(payload.clone())])
            );
            let mut client = MessageDecoder::new(Role::Client, Limits::default());
            let mut unmasked = Vec::new();
            write_frame(&mut unmasked, true, Opcode::Binary, &payload, None);
            assert_eq!(
                decode_all(&mut client, &unmasked),
                Ok(vec![Message::Binary(payload)])
            );
        }
        let mut input = Vec::new();
        write_frame(&mut input, false, Opcode::Text, "é".as_bytes(), MASK);
        write_frame(&mut input, true, Opcode::Continuation, &[b'x'; 300], MASK);
        let mut decoder = server();
        let first = match decoder.decode(&input) {
            Ok(Progress::Done(None, used)) => used,
            other => panic!("{other:?}"),
        };
        for len in 0..input.len() - first {
            match decoder.decode(&input[first..first + len]) {
                Ok(Progress::NeedMore { at_least }) => assert!(at_least > len),
                other => panic!("{len}: {other:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(23);
        let limits = Limits {
            max_frame: 200,
            max_message: 300,
        };
        for _ in 0..20_000 {
            let len = random.below(64) as usize;
            let input = random.bytes(len);
            for role in [Role::Server, Role::Client] {
                let mut decoder = MessageDecoder::new(role, limits.clone());
                let mut at = 0;
                while let Ok(Progress::Done(_, used)) = decoder.decode(&input[at..]) {
                    at += used;
                }
            }
        }
    }

    #[test]
    fn handshake_both_sides() {
        let key = client_key([7; 16]);
        let mut request = Vec::new();
        write_client_request(&mut request, "example.com", "/chat", &key).unwrap();
        let Ok(Progress::Done(parsed, _)) = parse_request(&request, &http::Limits::default())
        else {
            panic!("request does not parse");
        };
        assert_eq!(check_upgrade(&parsed), Ok(key.as_bytes()));
        let mut answer = Vec::new();
        write_accept(&mut answer, key.as_bytes(), Some("chat"));
        let Ok(Progress::Done(response, _)) =
            parse_response(&answer, &http::Limits::default(), http::Method::Get)
        else {
            panic!("answer does not parse");
        };
        assert_eq!(check_accept(&response, &key), Ok(()));
        assert!(check_accept(&response, &client_key([8; 16])).is_err());
    }

    #[test]
    fn bad_upgrades() {
        let base = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        let cases = [
            (format!("POST / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"), 400),
            (format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"), 426),
            (format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short==\r\n\r\n"), 400),
            (format!("GET / HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_string(), 400),
        ];
        for (text, status) in cases {
            let Ok(Progress::Done(request, _)) =
                parse_request(text.as_bytes(), &http::Limits::default())
            else {
                panic!("{text}");
            };
            assert_eq!(
                check_upgrade(&request).map_err(|e| e.status),
                Err(status),
                "{text}"
            );
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }
}
