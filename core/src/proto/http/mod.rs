//! HTTP/1.1 (RFC 9112) without IO: heads parsed with httparse, bodies framed
//! and unframed, heads and bodies written.
//!
//! Server side, per request:
//!
//! 1. [`request::parse_request`] on the connection's buffer: "need more",
//!    a [`Request`] (slices into the buffer, method and version as text and
//!    enum, the body's [`Framing`], keep-alive and `Expect: 100-continue`
//!    decided), or an [`Error`] whose [`Error::status`] is the answer to send
//!    before closing (400, 413, 414, 417, 431, 501, 505).
//! 2. If the request expects 100-continue and the handler wants its body,
//!    write [`response::CONTINUE`] first.
//! 3. A [`body::BodyDecoder`] made from the framing takes the body out of the
//!    bytes after the head, piece by piece, bounded by [`Limits::max_body`].
//! 4. [`response`] writes the status line, headers, a Content-Length body or
//!    chunks and the last chunk.
//!
//! Client side: [`client::parse_response`] parses a response head and says
//! how its body is framed (none for HEAD, 1xx, 204 and 304; Content-Length;
//! chunked; until the connection closes); the same decoder reads it.
//!
//! [`url`] decodes a request's path and splits its query.
//!
//! Rules enforced on requests (each with its status): request line over
//! `max_request_line` → 414; more than `max_headers` headers or a head over
//! `max_head` bytes → 431; NUL or another control byte in a header name or
//! value, obs-fold, a method that is not upper-case letters, `-` or `_`, a
//! target that is not origin-form (`/path`), absolute-form (`http://…`),
//! `*` for OPTIONS or authority-form for CONNECT → 400; an HTTP/1.1 request
//! with no Host or any request with two → 400; two different Content-Length
//! values (a list of equal ones counts as one), Transfer-Encoding with
//! Content-Length, Transfer-Encoding in HTTP/1.0, chunked not last or twice
//! → 400; a transfer coding other than chunked → 501; a declared body over
//! `max_body` → 413; a version other than 1.0 and 1.1 → 505; an Expect
//! other than 100-continue → 417.

pub mod body;
pub mod client;
pub mod request;
pub mod response;
pub mod url;

pub use body::{BodyDecoder, BodyStep};
pub use client::{parse_response, Response};
pub use request::{parse_request, Request};

pub use super::Progress;

/// A header as sent: the name in its original case, the value's bytes with
/// surrounding spaces trimmed (by httparse).
pub type Header<'a> = httparse::Header<'a>;

/// Bounds on one request (the server side) or response (the client side).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line, without its CRLF (nginx: 8 KiB).
    pub max_request_line: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Most bytes in one head, request line and final empty line included.
    pub max_head: usize,
    /// Most bytes of body (after chunked framing is removed).
    pub max_body: u64,
    /// Longest chunk-size line, extensions included.
    pub max_chunk_line: usize,
    /// Most bytes of trailer fields after the last chunk.
    pub max_trailers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_headers: 100,
            max_head: 32 * 1024,
            max_body: 1024 * 1024,
            max_chunk_line: 1024,
            max_trailers: 8 * 1024,
        }
    }
}

/// The protocol version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// "HTTP/1.0" or "HTTP/1.1".
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request method: the common ones as variants, any other upper-case
/// token as `Other` (the request's `method` text has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Connect,
    Trace,
    Other,
}

impl Method {
    pub fn from_text(text: &str) -> Method {
        match text {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            "CONNECT" => Method::Connect,
            "TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }
}

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (a request without Content-Length or Transfer-Encoding; a
    /// response to HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Until the peer closes (a response with neither header).
    UntilClose,
}

/// Why a message was refused. [`Error::status`] is the response to send;
/// `Display` is the reason, fit for the body and the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("body larger than the limit")]
    PayloadTooLarge,
    #[error("request line longer than the limit")]
    UriTooLong,
    #[error("{0}")]
    HeadersTooLarge(&'static str),
    #[error("unsupported expectation")]
    ExpectationFailed,
    #[error("{0}")]
    NotImplemented(&'static str),
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// Client side: a response that is not HTTP/1.x.
    #[error("invalid response: {0}")]
    BadResponse(&'static str),
}

impl Error {
    /// The status code to answer with (502 for a bad response, as a proxy
    /// would).
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) => 400,
            Error::PayloadTooLarge => 413,
            Error::UriTooLong => 414,
            Error::HeadersTooLarge(_) => 431,
            Error::ExpectationFailed => 417,
            Error::NotImplemented(_) => 501,
            Error::VersionNotSupported => 505,
            Error::BadResponse(_) => 502,
        }
    }
}

/// True when the comma-separated list `value` holds `token`
/// (case-insensitive), as in `Connection: keep-alive, Upgrade`.
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// `bytes` without leading and trailing spaces and tabs.
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// A header value may hold HTAB, visible ASCII, spaces and obs-text: no
/// NUL, CR, LF, other control bytes or DEL (RFC 9110 5.5).
pub(crate) fn valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A token (RFC 9110 5.6.2): what a header name or method is made of.
pub(crate) fn valid_token(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What the Content-Length and Transfer-Encoding fields of a head say,
/// shared by requests and responses.
pub(crate) struct BodyFields {
    pub length: Option<u64>,
    pub chunked: bool,
    pub transfer_encoding: bool,
}

/// Reads the framing fields of `headers`. Several Content-Length values
/// (fields or a list) must all be equal; a transfer coding other than
/// chunked is NotImplemented; chunked must be the last coding, once.
pub(crate) fn body_fields(
    headers: &[Header<'_>],
    bad: fn(&'static str) -> Error,
) -> Result<BodyFields, Error> {
    let mut fields = BodyFields {
        length: None,
        chunked: false,
        transfer_encoding: false,
    };
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            for item in header.value.split(|&b| b == b',') {
                let n = super::parse_decimal(trim(item)).ok_or(bad("invalid Content-Length"))?;
                match fields.length {
                    Some(seen) if seen != n => {
                        return Err(bad("conflicting Content-Length values"))
                    }
                    _ => fields.length = Some(n),
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            fields.transfer_encoding = true;
            for item in header.value.split(|&b| b == b',') {
                let coding = trim(item);
                if coding.is_empty() {
                    continue;
                }
                if fields.chunked {
                    return Err(bad("chunked is not the last transfer coding"));
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    fields.chunked = true;
                } else {
                    return Err(Error::NotImplemented("unsupported transfer coding"));
                }
            }
        }
    }
    if fields.transfer_encoding && !fields.chunked {
        return Err(bad("chunked is not the last transfer coding"));
    }
    Ok(fields)
}

/// Maps a parse error of httparse to ours.
pub(crate) fn from_httparse(error: httparse::Error, bad: fn(&'static str) -> Error) -> Error {
    match error {
        httparse::Error::HeaderName => bad("invalid byte in a header name"),
        httparse::Error::HeaderValue => bad("invalid byte in a header value"),
        httparse::Error::NewLine => bad("invalid line ending"),
        httparse::Error::Status => bad("invalid status"),
        httparse::Error::Token => bad("invalid token"),
        httparse::Error::TooManyHeaders => Error::HeadersTooLarge("too many header fields"),
        httparse::Error::Version => Error::VersionNotSupported,
    }
}

/// Header fields parsed into stack storage; more than this many are parsed
/// into heap storage. The stack storage is left uninitialized (httparse
/// writes what it parses), so a parse costs no allocation and no memset.
const STACK_HEADERS: usize = 128;

/// Room for `max_headers` header fields as httparse's uninitialized
/// storage: on the stack for the usual limits, on the heap past them.
pub(crate) fn with_header_storage<'a, R>(
    max_headers: usize,
    parse: impl FnOnce(&mut [std::mem::MaybeUninit<Header<'a>>]) -> R,
) -> R {
    if max_headers <= STACK_HEADERS {
        let mut stack = [const { std::mem::MaybeUninit::<Header<'a>>::uninit() }; STACK_HEADERS];
        parse(&mut stack[..max_headers])
    } else {
        let mut heap = Vec::with_capacity(max_headers);
        heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
        parse(&mut heap)
    }
}

/// The length of a complete head from httparse's answer on `window` (the
/// input cut at `max_head`); None when more input is needed; 431 when no
/// head ends within `max_head` bytes.
pub(crate) fn head_length(
    status: httparse::Result<usize>,
    window: &[u8],
    max_head: usize,
    bad: fn(&'static str) -> Error,
) -> Result<Option<usize>, Error> {
    match status {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) if window.len() >= max_head => {
            Err(Error::HeadersTooLarge("head larger than the limit"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(error) => Err(from_httparse(error, bad)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_lists() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b" close ", "close"));
        assert!(!has_token(b"closed", "close"));
    }

    #[test]
    fn statuses() {
        assert_eq!(Error::BadRequest("x").status(), 400);
        assert_eq!(Error::PayloadTooLarge.status(), 413);
        assert_eq!(Error::UriTooLong.status(), 414);
        assert_eq!(Error::HeadersTooLarge("x").status(), 431);
        assert_eq!(Error::NotImplemented("x").status(), 501);
        assert_eq!(Error::VersionNotSupported.status(), 505);
    }

    #[test]
    fn values_refuse_control_bytes() {
        assert!(valid_value(b"a\tb c\x80"));
        for bad in [&b"a\0b"[..], b"a\rb", b"a\nb", b"\x01", b"\x7f"] {
            assert!(!valid_value(bad), "{bad:?}");
        }
    }
}
