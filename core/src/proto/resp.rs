//! Redis RESP2: commands as a server reads them, replies as a client reads
//! them, and the writers of both.
//!
//! Server side: [`parse_command`] takes one command from the front of a
//! buffer, either a multibulk array of bulk strings (`*2\r\n$3\r\nGET\r\n...`)
//! or an inline command (`SET "a b" c\r\n`, split as Redis's `sdssplitargs`).
//! It behaves as redis-server 7.0 and `server-scripts/kv.lua`:
//!
//! - A header line (`*N`, `$N`) is complete once its `\r` and one more byte
//!   are there; the two bytes after a `\r` or after a bulk's data are skipped,
//!   not checked (Redis does the same).
//! - Errors carry Redis's texts (`invalid multibulk length`, `invalid bulk
//!   length`, `expected '$', got 'x'`, `too big mbulk count string`, `too big
//!   bulk count string`, `too big inline request`, `unbalanced quotes in
//!   request`); a server answers `-ERR Protocol error: TEXT` and closes.
//! - A bulk's declared size is checked against [`Limits::max_bulk`] before a
//!   byte of it is needed; a header or inline line longer than
//!   [`Limits::max_inline`] without its end is refused; so is a count over
//!   [`Limits::max_elements`] and a command whose bulks add up to more than
//!   [`Limits::max_command`] ([`Error::CommandTooLarge`]: Redis's
//!   client-query-buffer-limit, which closes without a reply).
//! - `*0`, `*-1` and an empty inline line are empty commands: consumed, with
//!   no arguments (Redis ignores them).
//!
//! Client side: [`parse_reply`] takes one reply of any RESP2 type, nested
//! arrays bounded by [`Limits::max_depth`]. [`write_command`] encodes a
//! command; `write_*` encode replies.
//!
//! The parsers are stateless: after "need more" the caller calls again with
//! the whole unconsumed input. [`Progress::NeedMore`] says how long the input
//! must at least be for the next call to get further, so a large bulk can be
//! read in one go.

pub use super::Progress;
use super::{parse_decimal, write_decimal, write_signed};

/// Bounds on what one command or reply may declare.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest bulk string (Redis's proto-max-bulk-len: 512 MiB).
    pub max_bulk: usize,
    /// Most elements in one array.
    pub max_elements: usize,
    /// Longest header or inline line without its end (Redis: 64 KiB).
    pub max_inline: usize,
    /// Most bytes of bulk data in one command (Redis: 1 GiB).
    pub max_command: usize,
    /// Deepest nesting of arrays in a reply (client side).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_elements: 1024 * 1024,
            max_inline: 64 * 1024,
            max_command: 1024 * 1024 * 1024,
            max_depth: 32,
        }
    }
}

/// A protocol error. `Display` gives Redis's text (without the
/// "ERR Protocol error: " prefix a server puts in front).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    /// The byte found where a bulk's `$` should be.
    #[error("expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    #[error("too big mbulk count string")]
    CountLineTooLong,
    #[error("too big bulk count string")]
    BulkLineTooLong,
    #[error("too big inline request")]
    InlineTooLong,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// The bulks of one command add up to more than `max_command` bytes.
    #[error("command too large")]
    CommandTooLarge,
    /// Client side: a reply that is not RESP2.
    #[error("invalid reply: {0}")]
    InvalidReply(&'static str),
    /// Client side: arrays nested deeper than `max_depth`.
    #[error("reply nested too deep")]
    TooDeep,
}

/// One argument of a command: a span of the input, or the bytes of an inline
/// word that had quotes or escapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Span(usize, usize),
    Owned(Vec<u8>),
}

impl Arg {
    /// The argument's bytes; `input` is the buffer the command was parsed
    /// from.
    pub fn bytes<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        match self {
            Arg::Span(start, end) => &input[*start..*end],
            Arg::Owned(bytes) => bytes,
        }
    }
}

/// Parses one command from the front of `input` into `args` (cleared first;
/// a Vec the caller reuses, so a command of spans allocates nothing).
/// `Done((), n)`: `args` holds the command (maybe empty), `n` bytes consumed.
pub fn parse_command(
    input: &[u8],
    limits: &Limits,
    args: &mut Vec<Arg>,
) -> Result<Progress<()>, Error> {
    args.clear();
    match input.first() {
        None => Ok(Progress::NeedMore { at_least: 1 }),
        Some(b'*') => parse_multibulk(input, limits, args),
        Some(_) => parse_inline(input, limits, args),
    }
}

/// Where a header line starting at `start` ends: the index of its `\r`, once
/// the byte after it is there too.
fn header_end(
    input: &[u8],
    start: usize,
    limits: &Limits,
    too_long: Error,
) -> Result<Option<usize>, Error> {
    match memchr::memchr(b'\r', &input[start..]) {
        Some(offset) if start + offset + 1 < input.len() => Ok(Some(start + offset)),
        Some(_) => Ok(None),
        None if input.len() - start > limits.max_inline => Err(too_long),
        None => Ok(None),
    }
}

/// Redis's string2ll: an optional '-', no leading zeros, no '+' or spaces,
/// within 64 bits.
fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
        return None;
    }
    let magnitude = parse_decimal(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

fn parse_multibulk(
    input: &[u8],
    limits: &Limits,
    args: &mut Vec<Arg>,
) -> Result<Progress<()>, Error> {
    let need = |len: usize| Ok(Progress::NeedMore { at_least: len + 1 });
    let Some(cr) = header_end(input, 0, limits, Error::CountLineTooLong)? else {
        return need(input.len());
    };
    let count = parse_integer(&input[1..cr]).ok_or(Error::MultibulkLength)?;
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(Progress::Done((), pos));
    }
    if count as u64 > limits.max_elements as u64 {
        return Err(Error::MultibulkLength);
    }
    let mut total: usize = 0;
    for _ in 0..count {
        if pos >= input.len() {
            return need(input.len());
        }
        let Some(cr) = header_end(input, pos, limits, Error::BulkLineTooLong)? else {
            return need(input.len());
        };
        if input[pos] != b'$' {
            return Err(Error::ExpectedBulk(input[pos]));
        }
        let size = parse_integer(&input[pos + 1..cr]).ok_or(Error::BulkLength)?;
        if size < 0 || size as u64 > limits.max_bulk as u64 {
            return Err(Error::BulkLength);
        }
        let size = size as usize;
        total = total.saturating_add(size);
        if total > limits.max_command {
            return Err(Error::CommandTooLarge);
        }
        let start = cr + 2;
        let end = start + size;
        if end + 2 > input.len() {
            return Ok(Progress::NeedMore { at_least: end + 2 });
        }
        args.push(Arg::Span(start, end));
        pos = end + 2;
    }
    Ok(Progress::Done((), pos))
}

fn parse_inline(input: &[u8], limits: &Limits, args: &mut Vec<Arg>) -> Result<Progress<()>, Error> {
    let Some(newline) = memchr::memchr(b'\n', input) else {
        if input.len() > limits.max_inline {
            return Err(Error::InlineTooLong);
        }
        return Ok(Progress::NeedMore {
            at_least: input.len() + 1,
        });
    };
    let mut stop = newline;
    if stop > 0 && input[stop - 1] == b'\r' {
        stop -= 1;
    }
    split_args(input, stop, args)?;
    Ok(Progress::Done((), newline + 1))
}

/// Redis's isspace() set, which separates words outside quotes.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Redis's sdssplitargs on `input[..stop]`: words separated by blanks;
/// "..." with \n \r \t \b \a \xHH escapes; '...' with \' only; a closing
/// quote must end the word. The line ends at its first NUL, as a C string.
fn split_args(input: &[u8], stop: usize, args: &mut Vec<Arg>) -> Result<(), Error> {
    let stop = memchr::memchr(0, &input[..stop]).unwrap_or(stop);
    let line = &input[..stop];
    if !line
        .iter()
        .any(|&b| matches!(b, b'"' | b'\'' | 0x0b | 0x0c))
    {
        let mut at = 0;
        while at < stop {
            while at < stop && is_space(line[at]) {
                at += 1;
            }
            let start = at;
            while at < stop && !is_space(line[at]) {
                at += 1;
            }
            if at > start {
                args.push(Arg::Span(start, at));
            }
        }
        return Ok(());
    }
    let mut at = 0;
    loop {
        while at < stop && is_space(line[at]) {
            at += 1;
        }
        if at >= stop {
            return Ok(());
        }
        let mut word = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let byte = line.get(at).copied();
            let next = line.get(at + 1).copied();
            if in_double {
                match byte {
                    None => return Err(Error::UnbalancedQuotes),
                    Some(b'\\') if next == Some(b'x') && hex_pair(line, at + 2).is_some() => {
                        word.push(hex_pair(line, at + 2).unwrap_or_default());
                        at += 3;
                    }
                    Some(b'\\') if next.is_some() => {
                        word.push(match next.unwrap_or_default() {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        at += 1;
                    }
                    Some(b'"') => {
                        if next.is_some_and(|b| !is_space(b)) {
                            return Err(Error::UnbalancedQuotes);
                        }
                        at += 1;
                        break;
                    }
                    Some(other) => word.push(other),
                }
            } else if in_single {
                match byte {
                    None => return Err(Error::UnbalancedQuotes),
                    Some(b'\\') if next == Some(b'\'') => {
                        word.push(b'\'');
                        at += 1;
                    }
                    Some(b'\'') => {
                        if next.is_some_and(|b| !is_space(b)) {
                            return Err(Error::UnbalancedQuotes);
                        }
                        at += 1;
                        break;
                    }
                    Some(other) => word.push(other),
                }
            } else {
                match byte {
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => {
                        at += 1;
                        break;
                    }
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => word.push(other),
                }
            }
            at += 1;
        }
        args.push(Arg::Owned(word));
    }
}

fn hex_pair(line: &[u8], at: usize) -> Option<u8> {
    let high = (*line.get(at)? as char).to_digit(16)?;
    let low = (*line.get(at + 1)? as char).to_digit(16)?;
    Some((high * 16 + low) as u8)
}

/// One RESP2 reply, borrowing the input it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR ...` (the text after the '-')
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`; None for the null bulk `$-1`.
    Bulk(Option<&'a [u8]>),
    /// `*2\r\n...`; None for the null array `*-1`.
    Array(Option<Vec<Reply<'a>>>),
}

/// Parses one reply from the front of `input`.
pub fn parse_reply<'a>(input: &'a [u8], limits: &Limits) -> Result<Progress<Reply<'a>>, Error> {
    let mut pos = 0;
    match reply_at(input, &mut pos, limits, 0)? {
        Some(reply) => Ok(Progress::Done(reply, pos)),
        None => Ok(Progress::NeedMore {
            at_least: pos.max(input.len() + 1),
        }),
    }
}

/// The reply at `*pos`; None if it is not all there (then `*pos` is the
/// least input length that can get further).
fn reply_at<'a>(
    input: &'a [u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Reply<'a>>, Error> {
    let start = *pos;
    let Some(&kind) = input.get(start) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(Error::InvalidReply("unknown type byte"));
    }
    // A reply line ends with "\r\n", checked here (a client trusts less).
    let line_end = match memchr::memchr(b'\r', &input[start..]) {
        Some(offset) => start + offset,
        None if input.len() - start > limits.max_inline => {
            return Err(Error::InvalidReply("line too long"))
        }
        None => return Ok(None),
    };
    if line_end - start > limits.max_inline {
        return Err(Error::InvalidReply("line too long"));
    }
    match input.get(line_end + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::InvalidReply("line not ended by CRLF")),
    }
    let line = &input[start + 1..line_end];
    let after = line_end + 2;
    let reply = match kind {
        b'+' => Reply::Simple(line),
        b':' => {
            Reply::Integer(parse_client_integer(line).ok_or(Error::InvalidReply("bad integer"))?)
        }
        b'$' => {
            let size = parse_client_integer(line).ok_or(Error::InvalidReply("bad bulk length"))?;
            if size == -1 {
                *pos = after;
                return Ok(Some(Reply::Bulk(None)));
            }
            if size < 0 || size as u64 > limits.max_bulk as u64 {
                return Err(Error::InvalidReply("bad bulk length"));
            }
            let end = after + size as usize;
            if end + 2 > input.len() {
                *pos = end + 2;
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(Error::InvalidReply("bulk not ended by CRLF"));
            }
            *pos = end + 2;
            return Ok(Some(Reply::Bulk(Some(&input[after..end]))));
        }
        b'*' => {
            let count =
                parse_client_integer(line).ok_or(Error::InvalidReply("bad array length"))?;
            if count == -1 {
                *pos = after;
                return Ok(Some(Reply::Array(None)));
            }
            if count < 0 || count as u64 > limits.max_elements as u64 {
                return Err(Error::InvalidReply("bad array length"));
            }
            if depth >= limits.max_depth {
                return Err(Error::TooDeep);
            }
            // Each element takes at least 3 bytes ("+\r\n"): do not reserve
            // for more elements than the input can hold.
            let mut items = Vec::with_capacity((count as usize).min((input.len() - after) / 3));
            *pos = after;
            for _ in 0..count {
                match reply_at(input, pos, limits, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            return Ok(Some(Reply::Array(Some(items))));
        }
        // Only '-' is left (checked above).
        _ => Reply::Error(line),
    };
    *pos = after;
    Ok(Some(reply))
}

/// An integer as a server sends it: `-?[0-9]+` within 64 bits.
fn parse_client_integer(text: &[u8]) -> Option<i64> {
    match text.split_first() {
        Some((b'-', digits)) => 0i64.checked_sub_unsigned(parse_decimal(digits)?),
        _ => i64::try_from(parse_decimal(text)?).ok(),
    }
}

/// Appends a command as a multibulk array.
pub fn write_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    write_array_header(out, args.len());
    for arg in args {
        write_bulk(out, arg.as_ref());
    }
}

/// `+text\r\n`; CR and LF in `text` become spaces (a status is one line).
pub fn write_simple(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'+');
    write_line(out, text);
}

/// `-text\r\n` (text as "ERR message"); CR and LF become spaces, as Redis
/// does for error replies.
pub fn write_error(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'-');
    write_line(out, text);
}

fn write_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `:n\r\n`
pub fn write_integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    write_signed(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `$len\r\nbytes\r\n`
pub fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    write_decimal(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// The null bulk `$-1\r\n`.
pub fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*count\r\n`; the caller writes the elements after it.
pub fn write_array_header(out: &mut Vec<u8>, count: usize) {
    out.push(b'*');
    write_decimal(out, count as u64);
    out.extend_from_slice(b"\r\n");
}

/// The null array `*-1\r\n`.
pub fn write_null_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*-1\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::Random;

    fn command(input: &[u8]) -> Result<Progress<Vec<Vec<u8>>>, Error> {
        command_with(input, &Limits::default())
    }

    fn command_with(input: &[u8], limits: &Limits) -> Result<Progress<Vec<Vec<u8>>>, Error> {
        let mut args = Vec::new();
        Ok(match parse_command(input, limits, &mut args)? {
            Progress::Done((), used) => {
                Progress::Done(args.iter().map(|a| a.bytes(input).to_vec()).collect(), used)
            }
            Progress::NeedMore { at_least } => Progress::NeedMore { at_least },
        })
    }

    fn words(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_command() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n*1\r\n";
        assert_eq!(
            command(input),
            Ok(Progress::Done(words(&["SET", "k", "va\r\nl"]), 31))
        );
    }

    #[test]
    fn the_two_bytes_after_a_line_are_skipped_as_redis_does() {
        assert_eq!(
            command(b"*1\rx$4\ryPING\rz"),
            Ok(Progress::Done(words(&["PING"]), 14))
        );
    }

    #[test]
    fn empty_commands_are_consumed() {
        assert_eq!(command(b"*0\r\nPING"), Ok(Progress::Done(vec![], 4)));
        assert_eq!(command(b"*-1\r\n"), Ok(Progress::Done(vec![], 5)));
        assert_eq!(command(b"\r\nPING"), Ok(Progress::Done(vec![], 2)));
        assert_eq!(command(b"   \n"), Ok(Progress::Done(vec![], 4)));
    }

    #[test]
    fn inline_commands_split_as_sdssplitargs() {
        let cases: &[(&[u8], &[&str])] = &[
            (b"PING\r\n", &["PING"]),
            (b"PING\n", &["PING"]),
            (b"  SET  a\tb \r\n", &["SET", "a", "b"]),
            (b"SET \"a b\" 'c d'\r\n", &["SET", "a b", "c d"]),
            (b"ECHO \"x\\x21\\n\\q\"\r\n", &["ECHO", "x!\nq"]),
            (b"ECHO 'it\\'s'\n", &["ECHO", "it's"]),
            (b"ECHO \"\"\n", &["ECHO", ""]),
            (b"ECHO a\0b c\n", &["ECHO", "a"]),
            (b"ECHO ab\"c\"\n", &["ECHO", "abc"]),
        ];
        for (input, expected) in cases {
            assert_eq!(
                command(input),
                Ok(Progress::Done(words(expected), input.len())),
                "{input:?}"
            );
        }
    }

    /// The texts of kv.lua's GARBAGE table (tests/kv.rs), which are
    /// redis-server's.
    #[test]
    fn garbage_gets_the_redis_error_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "invalid multibulk length"),
            (b"*+1\r\n", "invalid multibulk length"),
            (b"*01\r\n", "invalid multibulk length"),
            (b"*-0\r\n", "invalid multibulk length"),
            (b"*1048577\r\n", "invalid multibulk length"),
            (b"*99999999999999999999\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
            (b"*1\r\n$600000000\r\n", "invalid bulk length"),
            (b"*1\r\n$4x\r\n", "invalid bulk length"),
            (b"*1\r\nx4\r\n", "expected '$', got 'x'"),
            (b"SET \"a b\r\n", "unbalanced quotes in request"),
            (b"SET \"a\"b c\r\n", "unbalanced quotes in request"),
            (b"SET 'a\r\n", "unbalanced quotes in request"),
        ];
        for (input, text) in cases {
            match command(input) {
                Err(error) => assert_eq!(error.to_string(), *text, "{input:?}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn long_lines_without_an_end_are_refused() {
        let long = vec![b'1'; 70_000];
        for (prefix, error) in [
            (&b"*"[..], Error::CountLineTooLong),
            (&b"*1\r\n$"[..], Error::BulkLineTooLong),
            (&b"PING "[..], Error::InlineTooLong),
        ] {
            let mut input = prefix.to_vec();
            input.extend_from_slice(&long);
            assert_eq!(command(&input), Err(error));
        }
    }

    #[test]
    fn a_bulk_is_checked_before_its_data_arrives() {
        let limits = Limits {
            max_bulk: 1024,
            ..Limits::default()
        };
        assert_eq!(
            command_with(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n", &limits),
            Err(Error::BulkLength)
        );
        assert_eq!(
            command_with(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1024\r\n", &limits),
            Ok(Progress::NeedMore {
                at_least: 27 + 1024 + 2
            })
        );
        let limits = Limits {
            max_command: 10,
            ..Limits::default()
        };
        assert_eq!(
            command_with(b"*2\r\n$6\r\nabcdef\r\n$5\r\n", &limits),
            Err(Error::CommandTooLarge)
        );
    }

    #[test]
    fn every_prefix_needs_more_and_asks_for_more_than_it_has() {
        let mut input = Vec::new();
        write_command(&mut input, &[&b"SET"[..], b"key", &vec![b'v'; 300]]);
        input.extend_from_slice(b"SET \"a b\" 'c'\r\n");
        let first = match command(&input) {
            Ok(Progress::Done(_, used)) => used,
            other => panic!("{other:?}"),
        };
        for len in 0..input.len() {
            let prefix = &input[..len];
            let rest = if len >= first {
                &prefix[first..]
            } else {
                prefix
            };
            match command(rest) {
                Ok(Progress::NeedMore { at_least }) => assert!(at_least > rest.len()),
                Ok(Progress::Done(..)) if len >= first => {
                    panic!("prefix {len} of the inline command parsed")
                }
                other => panic!("prefix {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn commands_round_trip() {
        let mut random = Random::new(7);
        let mut args = Vec::new();
        for _ in 0..500 {
            let count = 1 + random.below(6) as usize;
            let words: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = random.below(40) as usize;
                    random.bytes(len)
                })
                .collect();
            let mut input = Vec::new();
            write_command(&mut input, &words);
            match parse_command(&input, &Limits::default(), &mut args) {
                Ok(Progress::Done((), used)) => {
                    assert_eq!(used, input.len());
                    let parsed: Vec<&[u8]> = args.iter().map(|a| a.bytes(&input)).collect();
                    assert_eq!(parsed, words.iter().map(|w| &w[..]).collect::<Vec<_>>());
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut random = Random::new(11);
        let mut args = Vec::new();
        let limits = Limits {
            max_inline: 64,
            max_bulk: 100,
            ..Limits::default()
        };
        for _ in 0..20_000 {
            let len = random.below(64) as usize;
            let input = random.bytes_from(b"*$:+-\r\n0123456789 \"'\\x", len);
            let _ = parse_command(&input, &limits, &mut args);
            let _ = parse_reply(&input, &limits);
        }
    }

    fn reply(input: &[u8]) -> Result<Progress<Reply<'_>>, Error> {
        parse_reply(input, &Limits::default())
    }

    #[test]
    fn replies_of_every_type() {
        assert_eq!(
            reply(b"+OK\r\n"),
            Ok(Progress::Done(Reply::Simple(b"OK"), 5))
        );
        assert_eq!(
            reply(b"-ERR no\r\n"),
            Ok(Progress::Done(Reply::Error(b"ERR no"), 9))
        );
        assert_eq!(
            reply(b":-42\r\n"),
            Ok(Progress::Done(Reply::Integer(-42), 6))
        );
        assert_eq!(reply(b"$-1\r\n"), Ok(Progress::Done(Reply::Bulk(None), 5)));
        assert_eq!(
            reply(b"$0\r\n\r\n"),
            Ok(Progress::Done(Reply::Bulk(Some(b"")), 6))
        );
        assert_eq!(reply(b"*-1\r\n"), Ok(Progress::Done(Reply::Array(None), 5)));
        assert_eq!(
            reply(b"*2\r\n*1\r\n:1\r\n$2\r\nhi\r\n"),
            Ok(Progress::Done(
                Reply::Array(Some(vec![
                    Reply::Array(Some(vec![Reply::Integer(1)])),
                    Reply::Bulk(Some(b"hi"))
                ])),
                20
            ))
        );
    }

    #[test]
    fn malformed_replies() {
        for bad in [
            &b"?x\r\n"[..],
            b":1x\r\n",
            b":\r\n",
            b"$-2\r\n",
            b"$2\r\nabcd",
            b"*-2\r\n",
            b"+OK\rx",
            b":99999999999999999999\r\n",
        ] {
            assert!(reply(bad).is_err(), "{bad:?}");
        }
        let limits = Limits {
            max_depth: 2,
            ..Limits::default()
        };
        assert_eq!(
            parse_reply(b"*1\r\n*1\r\n*1\r\n:1\r\n", &limits),
            Err(Error::TooDeep)
        );
        let limits = Limits {
            max_elements: 2,
            ..Limits::default()
        };
        assert!(parse_reply(b"*3\r\n", &limits).is_err());
        let limits = Limits {
            max_bulk: 2,
            ..Limits::default()
        };
        assert!(parse_reply(b"$3\r\n", &limits).is_err());
    }

    #[test]
    fn reply_prefixes_need_more() {
        let mut input = Vec::new();
        write_array_header(&mut input, 6);
        write_simple(&mut input, b"OK");
        write_error(&mut input, b"ERR bad\r\nthing");
        write_integer(&mut input, i64::MIN);
        write_bulk(&mut input, b"hello");
        write_null(&mut input);
        write_null_array(&mut input);
        let whole = match reply(&input) {
            Ok(Progress::Done(value, used)) => {
                assert_eq!(used, input.len());
                value
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            whole,
            Reply::Array(Some(vec![
                Reply::Simple(b"OK"),
                Reply::Error(b"ERR bad  thing"),
                Reply::Integer(i64::MIN),
                Reply::Bulk(Some(b"hello")),
                Reply::Bulk(None),
                Reply::Array(None),
            ]))
        );
        for len in 0..input.len() {
            match reply(&input[..len]) {
                Ok(Progress::NeedMore { at_least }) => assert!(at_least > len, "{len}"),
                other => panic!("prefix {len}: {other:?}"),
            }
        }
    }
}
