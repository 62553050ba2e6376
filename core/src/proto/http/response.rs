//! Writers of HTTP/1.1 heads and bodies: a status line, header fields, the
//! Date field, a Content-Length body, chunks and the last chunk, `100
//! Continue`, a whole error response; and a client's request line.
//!
//! Header names must be tokens and values free of control bytes (CR, LF,
//! NUL...): a value taken from user input cannot split a response.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{valid_token, valid_value, Error, Version};
use crate::proto::write_decimal;

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a writer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("status code must be within 100-999")]
    Status,
    #[error("invalid header name")]
    HeaderName,
    #[error("invalid header value (control byte)")]
    HeaderValue,
    #[error("invalid method")]
    Method,
    #[error("invalid request target")]
    Target,
}

/// The reason phrase of a status code ("" for codes without one).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `HTTP/1.1 200 OK\r\n` (the version a server answers with is its own).
pub fn write_status_line(
    out: &mut Vec<u8>,
    version: Version,
    status: u16,
) -> Result<(), WriteError> {
    if !(100..=999).contains(&status) {
        return Err(WriteError::Status);
    }
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    write_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `name: value\r\n`, refused if the name is not a token or the value holds
/// a control byte.
pub fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), WriteError> {
    if !valid_token(name) {
        return Err(WriteError::HeaderName);
    }
    if !valid_value(value) {
        return Err(WriteError::HeaderValue);
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `Content-Length: n\r\n`
pub fn write_content_length(out: &mut Vec<u8>, length: u64) {
    out.extend_from_slice(b"Content-Length: ");
    write_decimal(out, length);
    out.extend_from_slice(b"\r\n");
}

/// `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n` (IMF-fixdate, RFC 9110 5.6.7).
pub fn write_date(out: &mut Vec<u8>, now: SystemTime) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = seconds / 86_400;
    let (year, month, day) = civil_from_days(days);
    let of_day = seconds % 86_400;
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(DAYS[(days % 7) as usize].as_bytes());
    out.extend_from_slice(b", ");
    two(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    out.push(b' ');
    write_decimal(out, year);
    out.push(b' ');
    two(out, of_day / 3600);
    out.push(b':');
    two(out, of_day / 60 % 60);
    out.push(b':');
    two(out, of_day % 60);
    out.extend_from_slice(b" GMT\r\n");
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01
/// (Howard Hinnant's civil_from_days, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The empty line that ends a head.
pub fn end_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\r\n");
}

/// One chunk of a chunked body. Empty data writes nothing: an empty chunk
/// would end the body (that is [`write_last_chunk`]).
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = data.len();
    while rest > 0 {
        at -= 1;
        digits[at] = b"0123456789abcdef"[rest & 15];
        rest >>= 4;
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the end of an empty trailer section.
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// A whole response for a refused request: its status, the reason as a
/// text body, and `Connection: close` (the server closes after it).
pub fn write_error_response(out: &mut Vec<u8>, error: &Error) {
    let reason = error.to_string();
    // The status of every Error is a valid code.
    let _ = write_status_line(out, Version::Http11, error.status());
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n");
    write_content_length(out, reason.len() as u64 + 1);
    end_head(out);
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// A client's `METHOD target HTTP/1.1\r\n`.
pub fn write_request_line(out: &mut Vec<u8>, method: &str, target: &str) -> Result<(), WriteError> {
    if !valid_token(method.as_bytes()) {
        return Err(WriteError::Method);
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WriteError::Target);
    }
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_whole_response() {
        let mut out = Vec::new();
        write_status_line(&mut out, Version::Http11, 200).unwrap();
        write_header(&mut out, b"Content-Type", b"text/plain").unwrap();
        write_content_length(&mut out, 5);
        end_head(&mut out);
        out.extend_from_slice(b"hello");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn writers_refuse_what_would_split_a_response() {
        let mut out = Vec::new();
        assert_eq!(
            write_header(&mut out, b"X", b"a\r\nSet-Cookie: x"),
            Err(WriteError::HeaderValue)
        );
        assert_eq!(
            write_header(&mut out, b"X", b"a\0"),
            Err(WriteError::HeaderValue)
        );
        assert_eq!(
            write_header(&mut out, b"X Y", b"a"),
            Err(WriteError::HeaderName)
        );
        assert_eq!(
            write_header(&mut out, b"", b"a"),
            Err(WriteError::HeaderName)
        );
        assert_eq!(
            write_status_line(&mut out, Version::Http11, 99),
            Err(WriteError::Status)
        );
        assert_eq!(
            write_status_line(&mut out, Version::Http11, 1000),
            Err(WriteError::Status)
        );
        assert_eq!(
            write_request_line(&mut out, "GET", "/a b"),
            Err(WriteError::Target)
        );
        assert_eq!(
            write_request_line(&mut out, "G T", "/"),
            Err(WriteError::Method)
        );
        assert!(out.is_empty());
        write_status_line(&mut out, Version::Http10, 599).unwrap();
        assert_eq!(out, b"HTTP/1.0 599 \r\n");
    }

    #[test]
    fn chunks() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"");
        write_chunk(&mut out, &[b'x'; 26]);
        write_last_chunk(&mut out);
        let mut expected = b"1a\r\n".to_vec();
        expected.extend([b'x'; 26]);
        expected.extend(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn dates() {
        let mut out = Vec::new();
        write_date(&mut out, UNIX_EPOCH + Duration::from_secs(784_111_777));
        assert_eq!(out, b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        out.clear();
        write_date(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400));
        assert_eq!(out, b"Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n");
        out.clear();
        write_date(&mut out, UNIX_EPOCH);
        assert_eq!(out, b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    }

    #[test]
    fn error_responses_close() {
        let mut out = Vec::new();
        write_error_response(&mut out, &Error::HeadersTooLarge("too many header fields"));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Connection: close\r\nContent-Length: 23\r\n\r\ntoo many header fields\n"
            ),
            "{text}"
        );
    }
}
