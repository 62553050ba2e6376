//! The NATS client protocol (text, CRLF-terminated control lines) without
//! IO: what a client reads from a server, and what it writes.
//!
//! Server operations ([`parse_server_op`], one per call, names
//! case-insensitive, fields separated by spaces or tabs):
//!
//! - `INFO {json}` (the JSON is handed back raw; [`info_max_payload`] reads
//!   the one field the parser needs)
//! - `MSG <subject> <sid> [reply-to] <#bytes>` + payload + CRLF
//! - `HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>` +
//!   headers + payload + CRLF; the header block starts with `NATS/1.0`,
//!   optionally a status (`NATS/1.0 503` is "no responders") and a
//!   description, then `Name: value` lines and an empty line
//! - `PING`, `PONG`, `+OK`, `-ERR '<message>'`
//!
//! Limits: a control line longer than [`Limits::max_control_line`] without
//! its end, and a message whose declared size is over
//! [`Limits::max_payload`] (the server's INFO says it), are errors before
//! the payload arrives. A sid is a decimal number (this client makes them).
//!
//! Client operations (`write_*`): CONNECT, PUB, HPUB, SUB (with a queue
//! group), UNSUB (with a count), PING, PONG. A subject, reply or queue name
//! with a space, tab, CR or LF, or an empty one, is refused: it would split
//! the control line.

use super::{parse_decimal, write_decimal, Progress};

/// Bounds on what a server may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest control line (the official clients use 4 KiB).
    pub max_control_line: usize,
    /// Largest message, headers included (INFO's max_payload; the server's
    /// default is 1 MiB).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// What a server sent that the protocol does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("control line longer than the limit")]
    ControlLineTooLong,
    #[error("message larger than max_payload")]
    PayloadTooLarge,
    #[error("unknown operation")]
    UnknownOperation,
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A message's headers (HMSG).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers<'a> {
    /// The status of the `NATS/1.0 503` line, if it has one.
    pub status: Option<u16>,
    /// The text after the status, if any.
    pub description: &'a [u8],
    /// `Name: value` fields in order, values trimmed.
    pub fields: Vec<(&'a [u8], &'a [u8])>,
}

impl Headers<'_> {
    /// The status that means nobody subscribes to a request's subject.
    pub fn is_no_responders(&self) -> bool {
        self.status == Some(503)
    }
}

/// A message delivered to a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub subject: &'a [u8],
    pub sid: u64,
    pub reply: Option<&'a [u8]>,
    /// Present for HMSG.
    pub headers: Option<Headers<'a>>,
    pub payload: &'a [u8],
}

/// One operation from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// The JSON object, raw.
    Info(&'a [u8]),
    Msg(Msg<'a>),
    Ping,
    Pong,
    Ok,
    /// The message between the quotes.
    Err(&'a [u8]),
}

/// Parses one server operation from the front of `input`.
pub fn parse_server_op<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<Progress<ServerOp<'a>>, Error> {
    let window = &input[..input.len().min(limits.max_control_line + 2)];
    let Some(newline) = memchr::memchr(b'\n', window) else {
        if window.len() > limits.max_control_line + 1 {
            return Err(Error::ControlLineTooLong);
        }
        return Ok(Progress::NeedMore {
            at_least: input.len() + 1,
        });
    };
    if newline == 0 || window[newline - 1] != b'\r' {
        return Err(Error::Invalid("line ending"));
    }
    let line = &window[..newline - 1];
    let after = newline + 1;
    let name_end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(line.len());
    let (name, rest) = (&line[..name_end], trim_start(&line[name_end..]));
    let op = if name.eq_ignore_ascii_case(b"MSG") {
        return parse_msg(input, rest, after, false, limits);
    } else if name.eq_ignore_ascii_case(b"HMSG") {
        return parse_msg(input, rest, after, true, limits);
    } else if name.eq_ignore_ascii_case(b"PING") && rest.is_empty() {
        ServerOp::Ping
    } else if name.eq_ignore_ascii_case(b"PONG") && rest.is_empty() {
        ServerOp::Pong
    } else if name.eq_ignore_ascii_case(b"+OK") && rest.is_empty() {
        ServerOp::Ok
    } else if name.eq_ignore_ascii_case(b"-ERR") {
        let text = trim_end(rest);
        let text = text
            .strip_prefix(b"'")
            .and_then(|t| t.strip_suffix(b"'"))
            .unwrap_or(text);
        ServerOp::Err(text)
    } else if name.eq_ignore_ascii_case(b"INFO") && rest.starts_with(b"{") {
        ServerOp::Info(trim_end(rest))
    } else {
        return Err(Error::UnknownOperation);
    };
    Ok(Progress::Done(op, after))
}

fn parse_msg<'a>(
    input: &'a [u8],
    args: &'a [u8],
    after: usize,
    with_headers: bool,
    limits: &Limits,
) -> Result<Progress<ServerOp<'a>>, Error> {
    let mut fields = [&b""[..]; 5];
    let mut count = 0;
    for field in args
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|f| !f.is_empty())
    {
        if count == fields.len() {
            return Err(Error::Invalid("message arguments"));
        }
        fields[count] = field;
        count += 1;
    }
    let size_fields = if with_headers { 2 } else { 1 };
    let (subject, sid, reply, sizes) = match count - size_fields.min(count) {
        2 => (fields[0], fields[1], None, &fields[2..count]),
        3 => (fields[0], fields[1], Some(fields[2]), &fields[3..count]),
        _ => return Err(Error::Invalid("message arguments")),
    };
    let sid = parse_decimal(sid).ok_or(Error::Invalid("sid"))?;
    let size = |text: &[u8]| -> Result<usize, Error> {
        let n = parse_decimal(text).ok_or(Error::Invalid("size"))?;
        if n > limits.max_payload as u64 {
            return Err(Error::PayloadTooLarge);
        }
        Ok(n as usize)
    };
    let (header_len, total) = if with_headers {
        let (header_len, total) = (size(sizes[0])?, size(sizes[1])?);
        if header_len > total {
            return Err(Error::Invalid("header size"));
        }
        (header_len, total)
    } else {
        (0, size(sizes[0])?)
    };
    let end = after + total;
    if input.len() < end + 2 {
        return Ok(Progress::NeedMore { at_least: end + 2 });
    }
    if &input[end..end + 2] != b"\r\n" {
        return Err(Error::Invalid("message not ended by CRLF"));
    }
    let headers = if with_headers {
        Some(parse_headers(&input[after..after + header_len])?)
    } else {
        None
    };
    let msg = Msg {
        subject,
        sid,
        reply,
        headers,
        payload: &input[after + header_len..end],
    };
    Ok(Progress::Done(ServerOp::Msg(msg), end + 2))
}

/// `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`
fn parse_headers(block: &[u8]) -> Result<Headers<'_>, Error> {
    let invalid = Error::Invalid("headers");
    let body = block.strip_suffix(b"\r\n\r\n").ok_or(invalid.clone())?;
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let first = lines.next().ok_or(invalid.clone())?;
    let rest = first.strip_prefix(b"NATS/1.0").ok_or(invalid.clone())?;
    let rest = trim_start(rest);
    let (status, description) = if rest.is_empty() {
        (None, &b""[..])
    } else {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits != 3 {
            return Err(invalid);
        }
        let status = parse_decimal(&rest[..digits]).ok_or(invalid.clone())? as u16;
        (Some(status), trim_end(trim_start(&rest[digits..])))
    };
    let mut fields = Vec::new();
    for line in lines {
        let colon = memchr::memchr(b':', line).ok_or(invalid.clone())?;
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return Err(invalid);
        }
        fields.push((name, trim_end(trim_start(&line[colon + 1..]))));
    }
    Ok(Headers {
        status,
        description,
        fields,
    })
}

/// The `max_payload` field of an INFO object, if it has one.
pub fn info_max_payload(info: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"max_payload\"";
    let at = memchr::memmem::find(info, KEY)? + KEY.len();
    let rest = trim_start(&info[at..]).strip_prefix(b":")?;
    let rest = trim_start(rest);
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    parse_decimal(&rest[..digits])
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// What a client writer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("a subject, reply or queue group must be non-empty with no space, tab, CR or LF")]
    Name,
    #[error("a header name must be a token and a value must have no CR or LF")]
    Header,
    #[error("the CONNECT options must be one line of JSON")]
    Options,
}

fn check_name(name: &[u8]) -> Result<(), WriteError> {
    if name.is_empty()
        || name
            .iter()
            .any(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0))
    {
        return Err(WriteError::Name);
    }
    Ok(())
}

/// `CONNECT {json}` (the caller builds the JSON: verbose, pedantic,
/// headers, no_responders, name, lang, version...).
pub fn write_connect(out: &mut Vec<u8>, options_json: &[u8]) -> Result<(), WriteError> {
    if !options_json.starts_with(b"{") || options_json.iter().any(|&b| b == b'\r' || b == b'\n') {
        return Err(WriteError::Options);
    }
    out.extend_from_slice(b"CONNECT ");
    out.extend_from_slice(options_json);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `PUB <subject> [reply] <#bytes>` + payload.
pub fn write_pub(
    out: &mut Vec<u8>,
    subject: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) -> Result<(), WriteError> {
    check_name(subject)?;
    reply.map_or(Ok(()), check_name)?;
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    if let Some(reply) = reply {
        out.push(b' ');
        out.extend_from_slice(reply);
    }
    out.push(b' ');
    write_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `HPUB <subject> [reply] <#header bytes> <#total bytes>` + a `NATS/1.0`
/// header block of `headers` + payload.
pub fn write_hpub(
    out: &mut Vec<u8>,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[(&[u8], &[u8])],
    payload: &[u8],
) -> Result<(), WriteError> {
    check_name(subject)?;
    reply.map_or(Ok(()), check_name)?;
    let mut block = b"NATS/1.0\r\n".to_vec();
    for (name, value) in headers {
        let bad_name = name.is_empty() || name.iter().any(|&b| b <= b' ' || b == b':' || b == 0x7f);
        if bad_name || value.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(WriteError::Header);
        }
        block.extend_from_slice(name);
        block.extend_from_slice(b": ");
        block.extend_from_slice(value);
        block.extend_from_slice(b"\r\n");
    }
    block.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"HPUB ");
    out.extend_from_slice(subject);
    if let Some(reply) = reply {
        out.push(b' ');
        out.extend_from_slice(reply);
    }
    out.push(b' ');
    write_decimal(out, block.len() as u64);
    out.push(b' ');
    write_decimal(out, (block.len() + payload.len()) as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `SUB <subject> [queue group] <sid>`
pub fn write_sub(
    out: &mut Vec<u8>,
    subject: &[u8],
    queue: Option<&[u8]>,
    sid: u64,
) -> Result<(), WriteError> {
    check_name(subject)?;
    queue.map_or(Ok(()), check_name)?;
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject);
    if let Some(queue) = queue {
        out.push(b' ');
        out.extend_from_slice(queue);
    }
    out.push(b' ');
    write_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `UNSUB <sid> [max_msgs]`: at once, or after that many more messages.
pub fn write_unsub(out: &mut Vec<u8>, sid: u64, max_msgs: Option<u64>) {
    out.extend_from_slice(b"UNSUB ");
    write_decimal(out, sid);
    if let Some(max) = max_msgs {
        out.push(b' ');
        write_decimal(out, max);
    }
    out.extend_from_slice(b"\r\n");
}

pub fn write_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

pub fn write_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Random;

    fn op(input: &[u8]) -> Result<Progress<ServerOp<'_>>, Error> {
        parse_server_op(input, &Limits::default())
    }

    fn done(input: &[u8]) -> ServerOp<'_> {
        match op(input) {
            Ok(Progress::Done(value, used)) => {
                assert_eq!(used, input.len(), "{:?}", String::from_utf8_lossy(input));
                value
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn simple_operations() {
        assert_eq!(done(b"PING\r\n"), ServerOp::Ping);
        assert_eq!(done(b"pong\r\n"), ServerOp::Pong);
        assert_eq!(done(b"+OK\r\n"), ServerOp::Ok);
        assert_eq!(
            done(b"-ERR 'Unknown Protocol Operation'\r\n"),
            ServerOp::Err(b"Unknown Protocol Operation")
        );
        let info =
            done(b"INFO {\"server_id\":\"x\",\"max_payload\": 1048576,\"headers\":true} \r\n");
        let ServerOp::Info(json) = info else {
            panic!("{info:?}")
        };
        assert_eq!(info_max_payload(json), Some(1_048_576));
        assert_eq!(info_max_payload(b"{}"), None);
    }

    #[test]
    fn messages() {
        assert_eq!(
            done(b"MSG foo.bar 9 11\r\nHello World\r\n"),
            ServerOp::Msg(Msg {
                subject: b"foo.bar",
                sid: 9,
                reply: None,
                headers: None,
                payload: b"Hello World"
            })
        );
        assert_eq!(
            done(b"MSG foo\t9 _INBOX.x  0\r\n\r\n"),
            ServerOp::Msg(Msg {
                subject: b"foo",
                sid: 9,
                reply: Some(b"_INBOX.x"),
                headers: None,
                payload: b""
            })
        );
        let input = b"HMSG FOO.BAR 9 BAZ.69 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n";
        let ServerOp::Msg(msg) = done(input) else {
            panic!()
        };
        assert_eq!(
            (msg.subject, msg.reply, msg.payload),
            (&b"FOO.BAR"[..], Some(&b"BAZ.69"[..]), &b"Hello World"[..])
        );
        let headers = msg.headers.unwrap();
        assert_eq!(headers.fields, vec![(&b"FoodGroup"[..], &b"vegetable"[..])]);
        assert!(!headers.is_no_responders());
        let no_responders = b"HMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
        let ServerOp::Msg(msg) = done(no_responders) else {
            panic!()
        };
        assert!(msg.headers.unwrap().is_no_responders());
        let timeout = b"HMSG _INBOX.a 1 32 32\r\nNATS/1.0 408 Request Timeout\r\n\r\n\r\n";
        let ServerOp::Msg(msg) = done(timeout) else {
            panic!()
        };
        let headers = msg.headers.unwrap();
        assert_eq!(
            (headers.status, headers.description),
            (Some(408), &b"Request Timeout"[..])
        );
    }

    #[test]
    fn malformed_operations() {
        for bad in [
            &b"FOO\r\n"[..],
            b"PING\n",
            b"PING x\r\n",
            b"INFO nope\r\n",
            b"MSG a 1\r\n",
            b"MSG a b 1\r\nx\r\n",
            b"MSG a 1 2 3 4\r\n",
            b"MSG a 1 x\r\n",
            b"MSG a 1 3\r\nabcd\r\n",
            b"HMSG a 1 5 3\r\n",
            b"HMSG a 1 5 5\r\nHTTP/\r\n",
            b"HMSG a 1 14 14\r\nNATS/1.0 5\r\n\r\n\r\n",
            b"HMSG a 1 17 17\r\nNATS/1.0\r\nbad\r\n\r\n\r\n",
        ] {
            assert!(op(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let limits = Limits {
            max_control_line: 10,
            max_payload: 5,
        };
        assert_eq!(
            parse_server_op(b"INFO {\"aaaaaaaaaa", &limits),
            Err(Error::ControlLineTooLong)
        );
        assert_eq!(
            parse_server_op(b"MSG a 1 6\r\n", &limits),
            Err(Error::PayloadTooLarge)
        );
    }

    #[test]
    fn client_operations() {
        let mut out = Vec::new();
        write_connect(
            &mut out,
            br#"{"verbose":false,"headers":true,"no_responders":true}"#,
        )
        .unwrap();
        write_pub(&mut out, b"a.b", Some(b"_INBOX.1"), b"hi").unwrap();
        write_hpub(&mut out, b"a", None, &[(b"K", b"v")], b"xyz").unwrap();
        write_sub(&mut out, b"a.*", Some(b"workers"), 7).unwrap();
        write_unsub(&mut out, 7, Some(1));
        write_unsub(&mut out, 8, None);
        write_ping(&mut out);
        write_pong(&mut out);
        let expected = "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
            PUB a.b _INBOX.1 2\r\nhi\r\n\
            HPUB a 18 21\r\nNATS/1.0\r\nK: v\r\n\r\nxyz\r\n\
            SUB a.* workers 7\r\nUNSUB 7 1\r\nUNSUB 8\r\nPING\r\nPONG\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let mut out = Vec::new();
        assert_eq!(
            write_pub(&mut out, b"a b", None, b""),
            Err(WriteError::Name)
        );
        assert_eq!(write_pub(&mut out, b"", None, b""), Err(WriteError::Name));
        assert_eq!(
            write_sub(&mut out, b"a", Some(b"q\r\n"), 1),
            Err(WriteError::Name)
        );
        assert_eq!(
            write_hpub(&mut out, b"a", None, &[(b"K", b"v\r\nX: y")], b""),
            Err(WriteError::Header)
        );
        assert_eq!(
            write_hpub(&mut out, b"a", None, &[(b"K:", b"v")], b""),
            Err(WriteError::Header)
        );
        assert_eq!(write_connect(&mut out, b"{\n}"), Err(WriteError::Options));
        assert!(out.is_empty());
    }

    /// What a client publishes with headers is what a subscriber's HMSG
    /// carries: the server only renames the operation and adds the sid.
    #[test]
    fn published_messages_round_trip() {
        let mut random = Random::new(29);
        for _ in 0..300 {
            let len = random.below(200) as usize;
            let payload = random.bytes(len);
            let value_len = random.below(20) as usize;
            let value: Vec<u8> = random
                .bytes_from(b"abc xyz-", value_len)
                .into_iter()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            let mut published = Vec::new();
            write_hpub(
                &mut published,
                b"subject.x",
                Some(b"reply.y"),
                &[(b"Key", &value)],
                &payload,
            )
            .unwrap();
            let delivered = [
                &b"HMSG subject.x 42"[..],
                &published[b"HPUB subject.x".len()..],
            ]
            .concat();
            let ServerOp::Msg(msg) = done(&delivered) else {
                panic!()
            };
            assert_eq!(msg.payload, &payload[..]);
            assert_eq!(msg.sid, 42);
            let headers = msg.headers.unwrap();
            assert_eq!(
                headers.fields[0].1,
                super::trim_end(super::trim_start(&value))
            );
            for len in 0..delivered.len() {
                match op(&delivered[..len]) {
                    Ok(Progress::NeedMore { at_least }) => assert!(at_least > len),
                    other => panic!("prefix {len}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(31);
        let limits = Limits {
            max_control_line: 64,
            max_payload: 64,
        };
        for _ in 0..20_000 {
            let len = random.below(80) as usize;
            let input = random.bytes_from(
                b"HMSG PING INFO {} +OK -ERR 0123456789\r\nNATS/1.0 503:",
                len,
            );
            let _ = parse_server_op(&input, &limits);
        }
    }
}
