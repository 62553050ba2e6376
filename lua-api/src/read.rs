//! Reads from a connection's input buffer: the validated request, the one
//! routine that tries to satisfy it (reading the socket while it is
//! believed readable), and taking the answer out of the buffer.
//!
//! An answer is copied out into a byte buffer of the caller's before any Lua
//! string is made of it: the VM's state may not be borrowed while Lua
//! allocates (see `state.rs`).

use lunet_core::connection::Fill;
use memchr::memmem;

use crate::protocol::ReadKind;
use crate::state::{ConnEntry, ConnectionPhase};

/// Size of a `readsome` without a `max`.
const READSOME_DEFAULT: usize = 64 * 1024;

/// A read, validated: what it waits for and its bounds.
#[derive(Clone, Debug)]
pub enum ReadRequest {
    Line {
        max: usize,
    },
    Exact {
        n: usize,
    },
    Until {
        delim: Vec<u8>,
        max: usize,
    },
    Some {
        max: usize,
    },
    /// Wait until at least `at_least` bytes are buffered, taking nothing:
    /// a codec that said "need more" (`proto::Progress::NeedMore`) parses
    /// the buffer again once this is satisfied. Only Rust makes it (the
    /// HTTP and WebSocket fast paths), and bounds `at_least` by its limits.
    Fill {
        at_least: usize,
    },
}

/// Smallest read syscall: pipelined requests arrive in one read.
const MIN_READ: usize = 16 * 1024;

/// How a read attempt ended: the bytes `[start, end)` of the input buffer
/// make the answer and `consume` bytes are dropped after it is taken.
pub enum ReadOutcome {
    Ready {
        end: usize,
        consume: usize,
    },
    Wait,
    Failed {
        err: &'static str,
        /// Hand back (and drop) the buffered partial data.
        partial: bool,
    },
}

impl ReadRequest {
    /// Validates the arguments a read wrapper passed (`core.read(conn,
    /// kind, size, delim)`); `max_line` is the default bound.
    pub fn parse(
        kind: i64,
        size: Option<i64>,
        delim: Option<&[u8]>,
        max_line: usize,
    ) -> Result<ReadRequest, ReadMisuse> {
        let bound = |call: &'static str| match size {
            None => Ok(max_line),
            Some(n) if n > 0 => Ok(n as usize),
            Some(n) => Err(ReadMisuse::NotPositive { call, size: n }),
        };
        Ok(
            match ReadKind::from_code(kind).ok_or(ReadMisuse::UnknownKind)? {
                ReadKind::Line => ReadRequest::Line {
                    max: bound("sock:readline")?,
                },
                ReadKind::Exact => match size {
                    Some(n) if n >= 0 => ReadRequest::Exact { n: n as usize },
                    _ => return Err(ReadMisuse::ByteCount),
                },
                ReadKind::Until => match delim {
                    Some(delim) if !delim.is_empty() => ReadRequest::Until {
                        delim: delim.to_vec(),
                        max: bound("sock:readuntil")?,
                    },
                    _ => return Err(ReadMisuse::Delimiter),
                },
                ReadKind::Some => ReadRequest::Some {
                    max: match size {
                        None => READSOME_DEFAULT,
                        Some(_) => bound("sock:readsome")?,
                    },
                },
            },
        )
    }

    /// Whether a timeout hands back what arrived (as OpenResty does); a
    /// `readsome` has nothing partial to hand back.
    pub fn returns_partial(&self) -> bool {
        !matches!(self, ReadRequest::Some { .. } | ReadRequest::Fill { .. })
    }
}

/// A read called with arguments that make no sense: raised in Lua.
#[derive(Debug, thiserror::Error)]
pub enum ReadMisuse {
    #[error("{call}: size must be positive, got {size}")]
    NotPositive { call: &'static str, size: i64 },
    #[error("sock:readn: expected a byte count >= 0")]
    ByteCount,
    #[error("sock:readuntil: expected a non-empty delimiter")]
    Delimiter,
    #[error("lunet: unknown read kind")]
    UnknownKind,
}

/// A finished read, its bytes (if any) moved to the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The answer is the buffer's content.
    Data,
    /// The read failed with `err`; `partial`: the buffer's content is the
    /// partial data to hand back with it.
    Failed { err: &'static str, partial: bool },
}

/// Moves the answer of `outcome` (not `Wait`) out of the entry's input
/// into `bytes` (cleared first).
pub fn take(entry: &mut ConnEntry, outcome: ReadOutcome, bytes: &mut Vec<u8>) -> Taken {
    bytes.clear();
    match outcome {
        ReadOutcome::Ready { end, consume } => {
            bytes.extend_from_slice(&entry.conn.input.as_slice()[..end]);
            entry.conn.input.consume(consume);
            Taken::Data
        }
        ReadOutcome::Failed { err, partial } => {
            if partial {
                take_all(entry, bytes);
            }
            Taken::Failed { err, partial }
        }
        ReadOutcome::Wait => Taken::Failed {
            err: "closed",
            partial: false,
        },
    }
}

/// Moves everything buffered into `bytes` (cleared first): what a read that
/// timed out hands back.
pub fn take_all(entry: &mut ConnEntry, bytes: &mut Vec<u8>) {
    bytes.clear();
    bytes.extend_from_slice(entry.conn.input.as_slice());
    let len = entry.conn.input.len();
    entry.conn.input.consume(len);
}

/// The values a read returns to Lua, made once the state is no longer
/// borrowed: `data` or `nil, err [, partial]`.
pub fn answer(
    lua: &mlua::Lua,
    taken: Taken,
    bytes: &[u8],
) -> mlua::Result<(mlua::Value, Option<&'static str>, Option<mlua::LuaString>)> {
    Ok(match taken {
        Taken::Data => (mlua::Value::String(lua.create_string(bytes)?), None, None),
        Taken::Failed { err, partial } => {
            let partial = if partial {
                Some(lua.create_string(bytes)?)
            } else {
                None
            };
            (mlua::Value::Nil, Some(err), partial)
        }
    })
}

/// A byte buffer kept for reads: past this capacity it is given back after
/// use, so one big read does not pin its memory.
pub const KEEP_BYTES: usize = 64 * 1024;

/// Tries to satisfy `request` from the buffer, reading the socket while it is
/// believed readable. Never blocks.
pub fn try_read(entry: &mut ConnEntry, request: &ReadRequest) -> ReadOutcome {
    loop {
        let input = entry.conn.input.as_slice();
        let limit = match request {
            ReadRequest::Line { max } => {
                if let Some(at) = memchr::memchr(b'\n', input) {
                    let end = if at > 0 && input[at - 1] == b'\r' {
                        at - 1
                    } else {
                        at
                    };
                    if end > *max {
                        return ReadOutcome::Failed {
                            err: "too long",
                            partial: false,
                        };
                    }
                    return ReadOutcome::Ready {
                        end,
                        consume: at + 1,
                    };
                }
                // A trailing '\r' may belong to the terminator.
                if input.len() > max.saturating_add(1) {
                    return ReadOutcome::Failed {
                        err: "too long",
                        partial: false,
                    };
                }
                max.saturating_add(2) - input.len()
            }
            ReadRequest::Exact { n } => {
                if input.len() >= *n {
                    return ReadOutcome::Ready {
                        end: *n,
                        consume: *n,
                    };
                }
                n - input.len()
            }
            ReadRequest::Until { delim, max } => {
                if let Some(at) = memmem::find(input, delim) {
                    if at > *max {
                        return ReadOutcome::Failed {
                            err: "too long",
                            partial: false,
                        };
                    }
                    return ReadOutcome::Ready {
                        end: at,
                        consume: at + delim.len(),
                    };
                }
                if input.len() >= max.saturating_add(delim.len()) {
                    return ReadOutcome::Failed {
                        err: "too long",
                        partial: false,
                    };
                }
                max.saturating_add(delim.len()) - input.len()
            }
            ReadRequest::Some { max } => {
                if !input.is_empty() {
                    let end = input.len().min(*max);
                    return ReadOutcome::Ready { end, consume: end };
                }
                *max
            }
            ReadRequest::Fill { at_least } => {
                if input.len() >= *at_least {
                    return ReadOutcome::Ready { end: 0, consume: 0 };
                }
                at_least - input.len()
            }
        };
        // A fill leaves the buffer to the codec that asked for it (the end
        // of a body read until the peer closes is in there).
        let partial = request.returns_partial();
        if entry.conn.failed {
            return ReadOutcome::Failed {
                err: "reset",
                partial,
            };
        }
        if entry.conn.eof {
            return ReadOutcome::Failed {
                err: "closed",
                partial,
            };
        }
        if !entry.conn.readable || entry.phase == ConnectionPhase::Connecting {
            return ReadOutcome::Wait;
        }
        // Reading more than the request needs is fine (it stays buffered);
        // `limit` only keeps a bounded reader's buffer bounded.
        match entry.conn.fill(limit.max(MIN_READ)) {
            Fill::Data(_) | Fill::Closed | Fill::Reset => continue,
            Fill::WouldBlock => return ReadOutcome::Wait,
        }
    }
}
