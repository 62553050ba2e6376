//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every target checks invariants of a codec, not only that it does not
//! panic; the checks that several targets share live here:
//!
//! - [`prefix_lengths`]: which prefixes of a parsed input to parse again
//!   (contract 3 of `lunet_core::proto`: a prefix of a valid input is
//!   "need more", never an error);
//! - [`Pieces`]: split sizes for feeding a stream in pieces, derived from
//!   the input so that a crash reproduces from its file alone;
//! - [`canonical`]: a Lua value as bytes that do not depend on the
//!   iteration order of its tables, to compare two decodes;
//! - [`resp_limits`] and [`each_message`] for the two RESP targets.

use lunet_core::proto::resp;
use lunet_lua::mlua::Value;

/// RESP limits small enough for inputs of a few KB to reach each of them.
pub fn resp_limits() -> resp::Limits {
    resp::Limits {
        max_bulk: 512,
        max_elements: 64,
        max_inline: 256,
        max_command: 2048,
        max_depth: 8,
    }
}

/// Runs `check` on the message at the front of `data`, then on the rest,
/// while it returns the length of a whole message (pipelining).
pub fn each_message(data: &[u8], mut check: impl FnMut(&[u8]) -> Option<usize>) {
    let mut rest = data;
    while let Some(consumed) = check(rest) {
        rest = &rest[consumed..];
    }
}

/// The prefix lengths in `1..len` to check for an input of `len` bytes: all
/// of them for short inputs; for long ones the longest and a few drawn from
/// `pieces` (a function of the input), so that a check costs a few parses
/// and the runs together still try every length.
pub fn prefix_lengths(len: usize, pieces: &mut Pieces) -> Vec<usize> {
    const ALL_BELOW: usize = 32;
    const DRAWN: usize = 8;
    if len <= ALL_BELOW {
        return (1..len).collect();
    }
    let mut lengths: Vec<usize> = (0..DRAWN)
        .map(|_| 1 + pieces.next_number() as usize % (len - 1))
        .collect();
    lengths.push(len - 1);
    lengths
}

/// Piece sizes of 1 to 16 bytes (and other numbers), a deterministic
/// function of `seed_bytes`.
pub struct Pieces(u64);

impl Pieces {
    pub fn new(seed_bytes: &[u8]) -> Pieces {
        // FNV-1a of the input: the same input splits the same way.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in seed_bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Pieces(hash | 1)
    }

    /// The next number of the sequence (xorshift64*).
    pub fn next_number(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The size of the next piece.
    pub fn next_size(&mut self) -> usize {
        (self.next_number() >> 60) as usize + 1
    }
}

/// Appends a canonical form of `value`: a table is its pairs, each as the
/// canonical forms of key and value, sorted; so two tables with the same
/// contents give the same bytes whatever order `next` visits them in.
/// Floats keep their bits (NaN, -0.0), integers stay apart from floats.
pub fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Nil => out.push(b'n'),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
        Value::Integer(i) => {
            out.push(b'i');
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Number(f) => {
            out.push(b'd');
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            out.push(b's');
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Value::Table(table) => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for pair in table.pairs::<Value, Value>() {
                let (key, value) = pair.expect("iterating a decoded table");
                let (mut key_form, mut value_form) = (Vec::new(), Vec::new());
                canonical(&key, &mut key_form);
                canonical(&value, &mut value_form);
                pairs.push((key_form, value_form));
            }
            pairs.sort();
            out.push(b'{');
            out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
            for (key, value) in pairs {
                out.extend_from_slice(&key);
                out.extend_from_slice(&value);
            }
            out.push(b'}');
        }
        other => panic!("a decoder produced a {}", other.type_name()),
    }
}
