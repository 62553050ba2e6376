//! The client side of RESP (`lunet_core::proto::resp::parse_reply`): a
//! buffer of replies of every type, nested arrays included, parsed one at a
//! time with small limits.
//!
//! Invariants, for each reply parsed:
//! - `Done(reply, n)`: 0 < n <= input length, and the same reply from
//!   `input[..n]` alone;
//! - `NeedMore { at_least }`: at_least > input length;
//! - a prefix of a parsed reply (every prefix of a short one, eight drawn
//!   per input of a long one) is "need more" with `at_least` no more
//!   than the reply's length, never an error (a reply line is bounded
//!   whether or not its end has arrived);
//! - the reply written back with the `write_*` functions parses to the same
//!   reply (status and error lines with their LFs turned to spaces, as the
//!   writers do), consuming exactly what was written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_core::proto::resp::{
    parse_reply, write_array_header, write_bulk, write_error, write_integer, write_null,
    write_null_array, write_simple, Limits, Progress, Reply,
};
use lunet_fuzz::{each_message, prefix_lengths, resp_limits, Pieces};

fn write(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(text) => write_simple(out, text),
        Reply::Error(text) => write_error(out, text),
        Reply::Integer(n) => write_integer(out, *n),
        Reply::Bulk(None) => write_null(out),
        Reply::Bulk(Some(bytes)) => write_bulk(out, bytes),
        Reply::Array(None) => write_null_array(out),
        Reply::Array(Some(items)) => {
            write_array_header(out, items.len());
            for item in items {
                write(item, out);
            }
        }
    }
}

/// A status or error line as the writers give it back: one line, LFs as
/// spaces (a parsed line never holds a CR).
fn one_line(text: &[u8]) -> Vec<u8> {
    text.iter()
        .map(|&b| if b == b'\n' { b' ' } else { b })
        .collect()
}

fn same_as_written(parsed: &Reply, original: &Reply) -> bool {
    match (parsed, original) {
        (Reply::Simple(a), Reply::Simple(b)) | (Reply::Error(a), Reply::Error(b)) => {
            *a == &one_line(b)[..]
        }
        (Reply::Array(Some(a)), Reply::Array(Some(b))) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_as_written(x, y))
        }
        (a, b) => a == b,
    }
}

fn check(input: &[u8], limits: &Limits) -> Option<usize> {
    let (reply, consumed) = match parse_reply(input, limits) {
        Err(_) => return None,
        Ok(Progress::NeedMore { at_least }) => {
            assert!(
                at_least > input.len(),
                "need more {at_least} of {}",
                input.len()
            );
            return None;
        }
        Ok(Progress::Done(reply, consumed)) => (reply, consumed),
    };
    assert!(
        consumed > 0 && consumed <= input.len(),
        "consumed {consumed} of {}",
        input.len()
    );
    match parse_reply(&input[..consumed], limits) {
        Ok(Progress::Done(alone, n)) if n == consumed => {
            assert_eq!(alone, reply, "the reply depends on what follows it")
        }
        other => panic!("input[..{consumed}] alone gave {other:?}"),
    }
    for len in prefix_lengths(consumed, &mut Pieces::new(&input[..consumed])) {
        match parse_reply(&input[..len], limits) {
            Ok(Progress::NeedMore { at_least }) => assert!(
                at_least > len && at_least <= consumed,
                "prefix {len} of {consumed}: need more {at_least}"
            ),
            other => panic!("prefix {len} of a reply of {consumed} bytes gave {other:?}"),
        }
    }
    let mut written = Vec::new();
    write(&reply, &mut written);
    match parse_reply(&written, limits) {
        Ok(Progress::Done(reparsed, n)) if n == written.len() => assert!(
            same_as_written(&reparsed, &reply),
            "written {written:?} parsed as {reparsed:?}, not {reply:?}"
        ),
        other => panic!("the reply written as {written:?} gave {other:?}"),
    }
    Some(consumed)
}

fuzz_target!(|data: &[u8]| {
    let limits = resp_limits();
    each_message(data, |rest| check(rest, &limits));
});
