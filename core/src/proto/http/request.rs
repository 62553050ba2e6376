//! The head of a request, as a server reads it (rules: see the module
//! header of `proto::http`).

use super::{
    body_fields, has_token, head_length, valid_value, with_header_storage, Error, Framing, Header,
    Limits, Method, Progress, Version,
};

/// A parsed request head. Every slice borrows the buffer it was parsed
/// from; only `headers` is allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method as sent ("GET", "PURGE").
    pub method: &'a str,
    /// The method as an enum (`Other` for the rest).
    pub kind: Method,
    /// The request target as sent.
    pub target: &'a str,
    /// The target's path, not yet percent-decoded (see `url::decode_path`);
    /// "*" for `OPTIONS *`, the authority for CONNECT.
    pub path: &'a str,
    /// What follows the first '?' of the target, if there is one.
    pub query: Option<&'a str>,
    pub version: Version,
    pub headers: Vec<Header<'a>>,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1): answer `100 Continue` before
    /// reading the body, or a final status instead.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field (WebSocket).
    pub upgrade: bool,
    /// Bytes of the head, final empty line included.
    pub head_len: usize,
}

impl<'a> Request<'a> {
    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }
}

/// Parses a request head from the front of `input`.
pub fn parse_request<'a>(input: &'a [u8], limits: &Limits) -> Result<Progress<Request<'a>>, Error> {
    check_request_line(input, limits)?;
    let window = &input[..input.len().min(limits.max_head)];
    with_header_storage(limits.max_headers, |storage| {
        let mut parsed = httparse::Request::new(&mut []);
        let status = parsed.parse_with_uninit_headers(window, storage);
        let Some(head_len) = head_length(status, window, limits.max_head, Error::BadRequest)?
        else {
            return Ok(Progress::NeedMore {
                at_least: input.len() + 1,
            });
        };
        // httparse fills all three once the head is complete.
        let (Some(method), Some(target), Some(minor)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(Error::BadRequest("incomplete request line"));
        };
        let headers = parsed.headers.to_vec();
        let request = finish(
            method,
            target,
            Version::from_minor(minor),
            headers,
            head_len,
            limits,
        )?;
        Ok(Progress::Done(request, head_len))
    })
}

/// 414 for a request line over the limit, before the whole head is looked
/// at (empty lines before it are skipped, as RFC 9112 2.2 allows).
fn check_request_line(input: &[u8], limits: &Limits) -> Result<(), Error> {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let rest = &input[start..];
    let window = &rest[..rest.len().min(limits.max_request_line + 2)];
    let (line_len, complete) = match memchr::memchr(b'\n', window) {
        Some(newline) if newline > 0 && window[newline - 1] == b'\r' => (newline - 1, true),
        Some(newline) => (newline, true),
        None => (window.len(), false),
    };
    // A line not yet ended may still end in the CR of its CRLF.
    let limit = if complete {
        limits.max_request_line
    } else {
        limits.max_request_line + 1
    };
    if line_len > limit {
        return Err(Error::UriTooLong);
    }
    Ok(())
}

fn finish<'a>(
    method: &'a str,
    target: &'a str,
    version: Version,
    headers: Vec<Header<'a>>,
    head_len: usize,
    limits: &Limits,
) -> Result<Request<'a>, Error> {
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
    {
        return Err(Error::BadRequest("invalid method"));
    }
    let kind = Method::from_text(method);
    let (path, query) = split_target(kind, target)?;

    let mut hosts = 0;
    let mut keep_alive = version == Version::Http11;
    let mut connection_upgrade = false;
    let mut has_upgrade = false;
    let mut expect_continue = false;
    for header in &headers {
        if !valid_value(header.value) {
            return Err(Error::BadRequest("invalid byte in a header value"));
        }
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(header.value, "close") {
                keep_alive = false;
            } else if has_token(header.value, "keep-alive") && version == Version::Http10 {
                keep_alive = true;
            }
            connection_upgrade |= has_token(header.value, "upgrade");
        } else if name.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        } else if name.eq_ignore_ascii_case("expect") {
            if !header.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Error::ExpectationFailed);
            }
            // An HTTP/1.0 client cannot understand 100 (RFC 9110 10.1.1).
            expect_continue = version == Version::Http11;
        }
    }
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(Error::BadRequest("a request needs exactly one Host field"));
    }

    let fields = body_fields(&headers, Error::BadRequest)?;
    let framing = if fields.transfer_encoding {
        if fields.length.is_some() {
            return Err(Error::BadRequest("Transfer-Encoding with Content-Length"));
        }
        if version == Version::Http10 {
            return Err(Error::BadRequest(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        Framing::Chunked
    } else {
        match fields.length {
            Some(length) if length > limits.max_body => return Err(Error::PayloadTooLarge),
            Some(0) | None => Framing::None,
            Some(length) => Framing::Length(length),
        }
    };

    Ok(Request {
        method,
        kind,
        target,
        path,
        query,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && framing != Framing::None,
        upgrade: connection_upgrade && has_upgrade,
        head_len,
    })
}

/// The path and query of a target in one of the four forms of RFC 9112 3.2.
fn split_target(kind: Method, target: &str) -> Result<(&str, Option<&str>), Error> {
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadRequest("invalid byte in the request target"));
    }
    if kind == Method::Connect {
        // authority-form: host:port, nothing else.
        if target.starts_with('/') || target.contains(['/', '?', '#']) {
            return Err(Error::BadRequest("CONNECT needs host:port"));
        }
        return Ok((target, None));
    }
    if target == "*" {
        if kind == Method::Options {
            return Ok((target, None));
        }
        return Err(Error::BadRequest("* is a target for OPTIONS only"));
    }
    let origin = if target.starts_with('/') {
        target
    } else {
        let rest = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(Error::BadRequest("invalid request target"))?;
        if rest.is_empty() || rest.starts_with(['/', '?']) {
            return Err(Error::BadRequest("invalid request target"));
        }
        match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => &rest[at..],
            // "http://host" and "http://host?q" have the path "/".
            Some(at) => return Ok(("/", Some(&rest[at + 1..]))),
            None => "/",
        }
    };
    // A fragment is never sent (RFC 9112 3.2); a '#' is refused.
    if origin.contains('#') {
        return Err(Error::BadRequest("fragment in the request target"));
    }
    Ok(match origin.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (origin, None),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Random;

    fn parse(input: &[u8]) -> Result<Progress<Request<'_>>, Error> {
        parse_request(input, &Limits::default())
    }

    fn request(input: &[u8]) -> Request<'_> {
        match parse(input) {
            Ok(Progress::Done(request, used)) => {
                assert_eq!(used, request.head_len);
                request
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn error(input: &[u8]) -> Error {
        match parse(input) {
            Err(error) => error,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn assert_statuses(cases: &[(&[u8], u16)]) {
        for (input, status) in cases {
            assert_eq!(
                error(input).status(),
                *status,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_simple_get() {
        let input = b"GET /a/b?x=1&y HTTP/1.1\r\nHost: h\r\nX-Thing:  v  \r\n\r\nrest";
        let request = request(input);
        assert_eq!(request.method, "GET");
        assert_eq!(request.kind, Method::Get);
        assert_eq!(request.path, "/a/b");
        assert_eq!(request.query, Some("x=1&y"));
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.header("x-thing"), Some(&b"v"[..]));
        assert_eq!(request.framing, Framing::None);
        assert!(request.keep_alive);
        assert!(!request.expect_continue);
        assert_eq!(request.head_len, input.len() - 4);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!request(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn body_framing() {
        let r = request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(r.framing, Framing::Length(5));
        let r = request(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(r.framing, Framing::Length(5));
        let r = request(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(r.framing, Framing::Chunked);
        let r = request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.framing, Framing::None);
    }

    #[test]
    fn smuggling_is_refused() {
        let cases: &[(&[u8], u16)] = &[
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", 413),
        ];
        assert_statuses(cases);
    }

    #[test]
    fn bad_heads_get_their_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX\0: v\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: h\r\n\tfolded\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
            (
                b"GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n",
                417,
            ),
        ];
        assert_statuses(cases);
    }

    #[test]
    fn other_target_forms() {
        let r = request(b"GET http://example.com:80/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((r.path, r.query), ("/x", Some("y")));
        let r = request(b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!((r.path, r.query), ("/", None));
        let r = request(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "*");
        let r = request(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(r.path, "example.com:443");
        let r = request(b"PURGE /cache HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((r.method, r.kind), ("PURGE", Method::Other));
    }

    #[test]
    fn expect_and_upgrade() {
        let r = request(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(r.expect_continue);
        let r = request(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(!r.expect_continue);
        let r = request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(r.upgrade);
    }

    #[test]
    fn limits_give_414_and_431() {
        let limits = Limits {
            max_request_line: 20,
            max_headers: 2,
            max_head: 80,
            ..Limits::default()
        };
        let parse =
            |input: &[u8]| parse_request(input, &limits).map(|p| matches!(p, Progress::Done(..)));
        assert_eq!(
            parse(b"GET /0123456789 HTTP/1.1\r\nHost: h\r\n\r\n")
                .unwrap_err()
                .status(),
            414
        );
        assert_eq!(
            parse(b"GET /0123456789012345678").unwrap_err().status(),
            414
        );
        assert_eq!(parse(b"GET /01 HTTP/1.1\r"), Ok(false));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n")
                .unwrap_err()
                .status(),
            431
        );
        let mut long = b"GET / HTTP/1.1\r\nHost: h\r\nA: ".to_vec();
        long.extend(vec![b'x'; 80]);
        assert_eq!(parse(&long).unwrap_err().status(), 431);
        let limits = Limits {
            max_headers: 200,
            ..Limits::default()
        };
        let mut many = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..150 {
            many.extend(format!("X-{i}: {i}\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert!(
            matches!(parse_request(&many, &limits), Ok(Progress::Done(r, _)) if r.headers.len() == 151)
        );
    }

    #[test]
    fn every_prefix_needs_more() {
        let input = b"\r\nPOST /upload?name=a+b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\nExpect: 100-continue\r\nX-Empty:\r\n\r\n";
        assert!(request(input).expect_continue);
        for len in 0..input.len() {
            match parse(&input[..len]) {
                Ok(Progress::NeedMore { at_least }) => assert!(at_least > len),
                other => panic!("prefix {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(3);
        let alphabet = b"GET /?#:%\r\n HTTP/1.0Host:Content-Length:Transfer-Encoding:chunked,";
        for _ in 0..20_000 {
            let len = random.below(120) as usize;
            let _ = parse(&random.bytes_from(alphabet, len));
        }
    }
}
