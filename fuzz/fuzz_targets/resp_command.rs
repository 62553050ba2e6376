//! The server side of RESP (`lunet_core::proto::resp::parse_command`): a
//! buffer of pipelined commands, multibulk or inline, parsed one at a time
//! with small limits (so that the fuzzer reaches them).
//!
//! Invariants, for each command parsed:
//! - `Done(n)`: 0 < n <= input length, every argument span inside the n
//!   bytes, and the same command from `input[..n]` alone;
//! - `NeedMore { at_least }`: at_least > input length;
//! - a prefix of a parsed command (every prefix of a short one, eight
//!   drawn per input of a long one) is "need more" with `at_least` no more
//!   than the command's length, never an error, except the documented
//!   one: a header or inline line over `max_inline` bytes without its end
//!   is refused (as Redis does), although the same line arriving whole
//!   with its end is read;
//! - the arguments written back with `write_command` parse to the same
//!   arguments, consuming exactly what was written.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_core::proto::resp::{parse_command, write_command, Arg, Error, Limits, Progress};
use lunet_fuzz::{each_message, prefix_lengths, resp_limits, Pieces};

fn words(input: &[u8], args: &[Arg]) -> Vec<Vec<u8>> {
    args.iter().map(|arg| arg.bytes(input).to_vec()).collect()
}

fn check(input: &[u8], limits: &Limits) -> Option<usize> {
    let mut args = Vec::new();
    let consumed = match parse_command(input, limits, &mut args) {
        Err(_) => return None,
        Ok(Progress::NeedMore { at_least }) => {
            assert!(
                at_least > input.len(),
                "need more {at_least} of {}",
                input.len()
            );
            return None;
        }
        Ok(Progress::Done((), consumed)) => consumed,
    };
    assert!(
        consumed > 0 && consumed <= input.len(),
        "consumed {consumed} of {}",
        input.len()
    );
    for arg in &args {
        if let Arg::Span(start, end) = *arg {
            assert!(
                start <= end && end <= consumed,
                "span {start}..{end} past {consumed}"
            );
        }
    }
    let command = words(input, &args);

    let mut alone = Vec::new();
    match parse_command(&input[..consumed], limits, &mut alone) {
        Ok(Progress::Done((), n)) if n == consumed => {
            assert_eq!(
                words(input, &alone),
                command,
                "the command depends on what follows it"
            )
        }
        other => panic!("input[..{consumed}] alone gave {other:?}"),
    }

    for len in prefix_lengths(consumed, &mut Pieces::new(&input[..consumed])) {
        let mut partial = Vec::new();
        match parse_command(&input[..len], limits, &mut partial) {
            Ok(Progress::NeedMore { at_least }) => assert!(
                at_least > len && at_least <= consumed,
                "prefix {len} of {consumed}: need more {at_least}"
            ),
            Err(Error::InlineTooLong | Error::CountLineTooLong | Error::BulkLineTooLong)
                if len > limits.max_inline => {}
            other => panic!("prefix {len} of a command of {consumed} bytes gave {other:?}"),
        }
    }

    let mut written = Vec::new();
    write_command(&mut written, &command);
    // An inline command is bounded by its line only: its words may be more
    // or longer than the small limits allow a multibulk.
    let mut reparsed = Vec::new();
    match parse_command(&written, &Limits::default(), &mut reparsed) {
        Ok(Progress::Done((), n)) if n == written.len() => {
            assert_eq!(
                words(&written, &reparsed),
                command,
                "write_command round trip"
            )
        }
        other => panic!("write_command output {written:?} gave {other:?}"),
    }
    Some(consumed)
}

fuzz_target!(|data: &[u8]| {
    let limits = resp_limits();
    each_message(data, |rest| check(rest, &limits));
});
