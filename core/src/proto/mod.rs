//! Sans-IO protocol codecs: bytes in, parsed values out, never IO.
//!
//! Contract shared by every parser here:
//!
//! 1. An entry point is a pure function of `&[u8]` (and the limits the caller
//!    passes). It never reads or writes a socket, never blocks, never panics
//!    on any input, and never allocates more than a caller-given limit allows.
//! 2. "Need more" is a result, not an error: the caller reads more bytes into
//!    the same buffer and calls again with the whole unconsumed input. A
//!    parse that succeeds says how many bytes it consumed; the caller drops
//!    them from the front of its buffer.
//! 3. Every prefix of a valid input gives "need more", never an error, so an
//!    input that arrives one byte at a time parses as one that arrives whole.
//! 4. Errors name what was wrong in words that can go to the peer (HTTP
//!    status and reason, Redis's error texts, WebSocket close codes).
//!
//! Encoders append to a caller's `Vec<u8>` (the connection's write buffer).
//!
//! | module | protocol |
//! | --- | --- |
//! | [`http`] | HTTP/1.1 (RFC 9112): request and response heads, body framing |
//! | [`resp`] | Redis RESP2: commands (server side) and replies (client side) |
//! | [`websocket`] | RFC 6455: handshake and frames |
//! | [`nats`] | NATS client protocol (text) |

pub mod http;
pub mod nats;
pub mod resp;
pub mod websocket;

#[cfg(test)]
mod peer_tests;

/// The outcome of a parse that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<T> {
    /// A whole value and the number of input bytes it took.
    Done(T, usize),
    /// The input is a prefix of a value: call again once it is at least
    /// `at_least` bytes long (a lower bound, always more than now).
    NeedMore { at_least: usize },
}

/// Appends the decimal digits of `n`.
#[inline]
pub fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the decimal digits of `n`, with a '-' when negative.
#[inline]
pub fn write_signed(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_decimal(out, n.unsigned_abs());
}

/// Parses `[0-9]+` into a u64: no sign, no spaces; None on anything else or
/// on overflow. Leading zeros are accepted (callers that refuse them check).
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    Some(n)
}

/// Helpers for the property tests of every codec.
#[cfg(test)]
pub(crate) mod testing {
    /// A small deterministic generator (xorshift64*): tests stay repeatable
    /// without a dependency.
    pub struct Random(u64);

    impl Random {
        pub fn new(seed: u64) -> Random {
            Random(seed.max(1))
        }

        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A value in `0..bound` (bound > 0).
        pub fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        pub fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }

        /// Random bytes drawn mostly from `alphabet`, so that random input
        /// gets past the first checks of a parser.
        pub fn bytes_from(&mut self, alphabet: &[u8], len: usize) -> Vec<u8> {
            (0..len)
                .map(|_| {
                    if self.below(8) == 0 {
                        self.next() as u8
                    } else {
                        alphabet[self.below(alphabet.len() as u64) as usize]
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trips() {
        for n in [0u64, 1, 9, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            assert_eq!(parse_decimal(&out), Some(n));
        }
        let mut out = Vec::new();
        write_signed(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().as_bytes());
    }

    #[test]
    fn decimal_rejects_signs_spaces_and_overflow() {
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1 ",
            b"18446744073709551616",
            b"1x",
        ] {
            assert_eq!(parse_decimal(bad), None, "{:?}", bad);
        }
    }
}
