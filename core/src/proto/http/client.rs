//! The head of a response, as a client reads it, and how its body is
//! framed (RFC 9112 6.3): none after HEAD, 1xx, 204 and 304; chunked;
//! Content-Length; otherwise until the server closes.

use super::{
    body_fields, has_token, head_length, valid_value, with_header_storage, Error, Framing, Header,
    Limits, Method, Progress, Version,
};

/// A parsed response head, borrowing the buffer it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub version: Version,
    pub status: u16,
    pub reason: &'a str,
    pub headers: Vec<Header<'a>>,
    /// How the body that follows is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this one's
    /// body.
    pub keep_alive: bool,
    /// Bytes of the head, final empty line included.
    pub head_len: usize,
}

impl<'a> Response<'a> {
    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    }
}

/// Parses a response head from the front of `input`; `method` is the
/// request's (a response to HEAD has no body whatever it says).
pub fn parse_response<'a>(
    input: &'a [u8],
    limits: &Limits,
    method: Method,
) -> Result<Progress<Response<'a>>, Error> {
    let window = &input[..input.len().min(limits.max_head)];
    with_header_storage(limits.max_headers, |storage| {
        let mut parsed = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            window,
            storage,
        );
        let Some(head_len) = head_length(status, window, limits.max_head, Error::BadResponse)?
        else {
            return Ok(Progress::NeedMore {
                at_least: input.len() + 1,
            });
        };
        let (Some(minor), Some(code)) = (parsed.version, parsed.code) else {
            return Err(Error::BadResponse("incomplete status line"));
        };
        let response = Response {
            version: Version::from_minor(minor),
            status: code,
            reason: parsed.reason.unwrap_or(""),
            headers: parsed.headers.to_vec(),
            framing: Framing::None,
            keep_alive: false,
            head_len,
        };
        frame(response, limits, method).map(|response| Progress::Done(response, head_len))
    })
}

/// Decides how the body of `response` is framed and whether the connection
/// stays open after it.
fn frame<'a>(
    mut response: Response<'a>,
    limits: &Limits,
    method: Method,
) -> Result<Response<'a>, Error> {
    let (version, status, headers) = (response.version, response.status, &response.headers);
    if headers.iter().any(|header| !valid_value(header.value)) {
        return Err(Error::BadResponse("invalid byte in a header value"));
    }

    let no_body =
        method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304;
    let fields = body_fields(headers, Error::BadResponse).map_err(|error| match error {
        Error::NotImplemented(what) => Error::BadResponse(what),
        other => other,
    })?;
    let framing = if no_body {
        Framing::None
    } else if fields.transfer_encoding {
        if fields.length.is_some() {
            return Err(Error::BadResponse("Transfer-Encoding with Content-Length"));
        }
        Framing::Chunked
    } else {
        match fields.length {
            Some(length) if length > limits.max_body => return Err(Error::PayloadTooLarge),
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    };

    let mut keep_alive = version == Version::Http11;
    for header in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        if has_token(header.value, "close") {
            keep_alive = false;
        } else if has_token(header.value, "keep-alive") && version == Version::Http10 {
            keep_alive = true;
        }
    }
    response.framing = framing;
    response.keep_alive = keep_alive && framing != Framing::UntilClose;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Random;

    fn response(input: &[u8], method: Method) -> Response<'_> {
        match parse_response(input, &Limits::default(), method) {
            Ok(Progress::Done(response, _)) => response,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn framing_of_responses() {
        let r = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            Method::Get,
        );
        assert_eq!(
            (r.status, r.reason, r.framing, r.keep_alive),
            (200, "OK", Framing::Length(3), true)
        );
        let r = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            Method::Head,
        );
        assert_eq!(r.framing, Framing::None);
        for status in [b"101", b"204", b"304"] {
            let mut input = b"HTTP/1.1 ".to_vec();
            input.extend_from_slice(status);
            input.extend_from_slice(b" X\r\nContent-Length: 3\r\n\r\n");
            assert_eq!(response(&input, Method::Get).framing, Framing::None);
        }
        let r = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
        );
        assert_eq!(r.framing, Framing::Chunked);
        let r = response(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get);
        assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
        let r = response(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
        );
        assert!(r.keep_alive);
        let r = response(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            Method::Get,
        );
        assert!(!r.keep_alive);
    }

    #[test]
    fn bad_responses() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n",
            b"SMTP ready\r\n\r\n",
        ] {
            assert!(
                parse_response(bad, &Limits::default(), Method::Get).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn every_prefix_needs_more() {
        let input =
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(response(input, Method::Get).head_len, input.len());
        for len in 0..input.len() {
            assert!(
                matches!(
                    parse_response(&input[..len], &Limits::default(), Method::Get),
                    Ok(Progress::NeedMore { .. })
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(13);
        for _ in 0..20_000 {
            let len = random.below(100) as usize;
            let input = random.bytes_from(b"HTTP/1.1 200 OK\r\nContent-Length: 0123456789", len);
            let _ = parse_response(&input, &Limits::default(), Method::Get);
        }
    }
}
