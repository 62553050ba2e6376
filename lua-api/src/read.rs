//! Reads from a connection's input buffer: the validated request, the one
//! routine that tries to satisfy it (reading the socket while it is
//! believed readable), and taking the answer out of the buffer.
//!
//! An answer is copied out into a byte buffer of the caller's before any Lua
//! string is made of it: the VM's state may not be borrowed while Lua
//! allocates (see `state.rs`). A parsed answer (a RESP command or reply) is
//! copied out whole and parsed again from that copy to make its Lua value
//! (`redis.rs`): the codec is stateless and the second parse of bytes known
//! to be whole costs less than carrying the parse across the borrow.

use std::borrow::Cow;
use std::cell::Cell;

use lunet_core::connection::Fill;
use lunet_core::proto::resp::{self, Progress};
use memchr::memmem;
use mlua::{Lua, Value};

use crate::ids::ConnectionId;
use crate::protocol::ReadKind;
use crate::redis;
use crate::state::{ConnEntry, ConnectionPhase, VmState};

/// Size of a `readsome` without a `max`.
const READSOME_DEFAULT: usize = 64 * 1024;

/// The `err` of a failed read: a word ("closed", "timeout", ...) or a
/// message made for this failure (a protocol error, a TLS alert).
pub type ErrorText = Cow<'static, str>;

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
    /// One RESP command, as a server reads it (`sock:readresp`); a bulk
    /// longer than `max_bulk` is refused before its data is read.
    Command {
        max_bulk: usize,
    },
    /// One RESP reply, as a client reads it (`sock:readreply`).
    Reply,
    /// The end of the TLS handshake (`sock:handshake`); at once on a plain
    /// socket.
    Handshake,
}

/// What a parsed read hands to Lua.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A table of the command's words.
    Command,
    /// The reply as a Lua value.
    Reply,
    /// `true`.
    Handshake,
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
    /// The first `len` bytes of the input make a whole value of `shape`.
    Parsed {
        len: usize,
        shape: Shape,
    },
    Wait,
    Failed {
        err: ErrorText,
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
                ReadKind::Command => ReadRequest::Command {
                    max_bulk: match size {
                        None => resp::Limits::default().max_bulk,
                        Some(_) => bound("sock:readresp")?,
                    },
                },
                ReadKind::Reply => ReadRequest::Reply,
                ReadKind::Handshake => ReadRequest::Handshake,
            },
        )
    }

    /// Whether a timeout hands back what arrived (as OpenResty does). A
    /// `readsome` has nothing partial to hand back; a parsed read leaves
    /// the bytes of an unfinished value in the buffer, so it can be tried
    /// again.
    pub fn returns_partial(&self) -> bool {
        matches!(
            self,
            ReadRequest::Line { .. } | ReadRequest::Exact { .. } | ReadRequest::Until { .. }
        )
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
    #[error("socket busy reading: another session waits on it")]
    Busy,
}

/// What the fast path of a read found, before its answer becomes Lua
/// values.
pub enum FastRead {
    /// The read finished; its bytes are in the caller's buffer.
    Taken(Taken),
    /// Must wait: the request is parked in `VmState::pending_read` for the
    /// scheduler (the wrapper yields `(OP.READ, conn)` next).
    Wait,
    /// The socket is closed.
    Closed,
}

/// The fast path of every read (`core.read`, `core.readresp`): validates
/// the arguments, tries to satisfy the read from the buffer and the socket,
/// and moves its answer into `bytes`, or parks the request.
pub fn fast_read(
    state: &mut VmState,
    id: ConnectionId,
    kind: i64,
    size: Option<i64>,
    delim: Option<&[u8]>,
    bytes: &mut Vec<u8>,
) -> Result<FastRead, ReadMisuse> {
    let request = ReadRequest::parse(kind, size, delim, state.settings.max_line)?;
    let Some(entry) = state.conns.get_mut(id) else {
        return Ok(FastRead::Closed);
    };
    if entry.phase == ConnectionPhase::Closing {
        return Ok(FastRead::Closed);
    }
    if entry.reader.is_some() {
        return Err(ReadMisuse::Busy);
    }
    match try_read(entry, &request) {
        ReadOutcome::Wait => {
            state.pending_read = Some((id, request));
            Ok(FastRead::Wait)
        }
        // Here the caller makes the value at once.
        outcome => Ok(FastRead::Taken(take(entry, outcome, bytes))),
    }
}

/// A finished read, its bytes (if any) moved to the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// The answer is the buffer's content.
    Data,
    /// The buffer's content is a whole value of this shape.
    Parsed(Shape),
    /// The answer of a read that waited is at the front of the input, left
    /// there: the session is resumed with `true` and takes it with the
    /// fast path when it runs (its wrapper calls it again), so an answer
    /// that arrives while a session waits costs what one found buffered
    /// costs, and is copied once, into the Lua string.
    Buffered,
    /// The read failed with `err`; `partial`: the buffer's content is the
    /// partial data to hand back with it.
    Failed { err: ErrorText, partial: bool },
}

/// Moves the answer of `outcome` (not `Wait`) out of the entry's input
/// into `bytes` (cleared first).
pub fn take(entry: &mut ConnEntry, outcome: ReadOutcome, bytes: &mut Vec<u8>) -> Taken {
    bytes.clear();
    match outcome {
        ReadOutcome::Ready { end, consume } => {
            entry.conn.input.take_front(end, bytes);
            entry.conn.input.consume(consume - end);
            Taken::Data
        }
        ReadOutcome::Parsed { len, shape } => take_parsed(entry, len, shape, bytes),
        ReadOutcome::Failed { err, partial } => {
            if partial {
                take_all(entry, bytes);
            }
            Taken::Failed { err, partial }
        }
        ReadOutcome::Wait => Taken::Failed {
            err: "closed".into(),
            partial: false,
        },
    }
}

/// The end of a read that waited (`outcome` is not `Wait`): a ready answer
/// stays buffered ([`Taken::Buffered`]); a failure takes its partial data
/// into `bytes`.
pub fn settle(entry: &mut ConnEntry, outcome: ReadOutcome, bytes: &mut Vec<u8>) -> Taken {
    match outcome {
        ReadOutcome::Ready { .. } | ReadOutcome::Parsed { .. } => Taken::Buffered,
        outcome => take(entry, outcome, bytes),
    }
}

/// Moves the `len` bytes of a parsed value into `bytes`.
fn take_parsed(entry: &mut ConnEntry, len: usize, shape: Shape, bytes: &mut Vec<u8>) -> Taken {
    entry.conn.input.take_front(len, bytes);
    Taken::Parsed(shape)
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
/// borrowed: `data` or `nil, err [, partial]`. A parsed reply that is an
/// error reply gives `nil, text, true` (the third value tells it from a
/// failed read).
pub fn answer(lua: &Lua, taken: Taken, bytes: &[u8]) -> mlua::Result<ReadAnswer> {
    Ok(match taken {
        Taken::Data => (Value::String(lua.create_string(bytes)?), None, Value::Nil),
        Taken::Parsed(Shape::Handshake) | Taken::Buffered => {
            (Value::Boolean(true), None, Value::Nil)
        }
        Taken::Parsed(Shape::Command) => (redis::command_table(lua, bytes)?, None, Value::Nil),
        Taken::Parsed(Shape::Reply) => redis::reply_answer(lua, bytes)?,
        Taken::Failed { err, partial } => {
            let partial = if partial {
                Value::String(lua.create_string(bytes)?)
            } else {
                Value::Nil
            };
            (Value::Nil, Some(err), partial)
        }
    })
}

/// What a read returns to Lua: the value, the error, the third value.
pub type ReadAnswer = (Value, Option<ErrorText>, Value);

thread_local! {
    /// The words of the command being parsed, kept between calls. Taken out
    /// while in use: a finalizer that reads during a Lua allocation finds
    /// it empty and uses a fresh one.
    static WORDS: Cell<Vec<resp::Arg>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with the kept vector of command words.
pub(crate) fn with_words<R>(f: impl FnOnce(&mut Vec<resp::Arg>) -> R) -> R {
    let mut words = WORDS.take();
    let result = f(&mut words);
    WORDS.set(words);
    result
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
                        return too_long();
                    }
                    return ReadOutcome::Ready {
                        end,
                        consume: at + 1,
                    };
                }
                // A trailing '\r' may belong to the terminator.
                if input.len() > max.saturating_add(1) {
                    return too_long();
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
                        return too_long();
                    }
                    return ReadOutcome::Ready {
                        end: at,
                        consume: at + delim.len(),
                    };
                }
                if input.len() >= max.saturating_add(delim.len()) {
                    return too_long();
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
            ReadRequest::Command { max_bulk } => {
                let limits = resp::Limits {
                    max_bulk: *max_bulk,
                    ..resp::Limits::default()
                };
                match with_words(|words| {
                    resp::parse_command(input, &limits, words).map(|p| (p, words.is_empty()))
                }) {
                    // An empty command (`*0`, a blank line): Redis skips it.
                    Ok((Progress::Done((), used), true)) => {
                        entry.conn.input.consume(used);
                        continue;
                    }
                    Ok((Progress::Done((), used), false)) => {
                        return ReadOutcome::Parsed {
                            len: used,
                            shape: Shape::Command,
                        }
                    }
                    Ok((Progress::NeedMore { at_least }, _)) => at_least - input.len(),
                    Err(e) => return protocol_error(e),
                }
            }
            ReadRequest::Reply => match resp::parse_reply(input, &resp::Limits::default()) {
                Ok(Progress::Done(_, used)) => {
                    return ReadOutcome::Parsed {
                        len: used,
                        shape: Shape::Reply,
                    }
                }
                Ok(Progress::NeedMore { at_least }) => at_least - input.len(),
                Err(e) => return protocol_error(e),
            },
            ReadRequest::Handshake => {
                if !entry.conn.handshaking() {
                    return ReadOutcome::Parsed {
                        len: 0,
                        shape: Shape::Handshake,
                    };
                }
                1
            }
        };
        // A failed read hands back what arrived, except a fill: it leaves
        // the buffer to the codec that asked for it (the end of a body read
        // until the peer closes is in there).
        let partial = !matches!(request, ReadRequest::Fill { .. });
        if entry.conn.failed {
            return ReadOutcome::Failed {
                err: entry
                    .conn
                    .failure()
                    .map_or(Cow::Borrowed("reset"), |text| Cow::Owned(text.to_owned())),
                partial,
            };
        }
        if entry.conn.eof {
            return ReadOutcome::Failed {
                err: "closed".into(),
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

fn too_long() -> ReadOutcome {
    ReadOutcome::Failed {
        err: "too long".into(),
        partial: false,
    }
}

/// A RESP protocol error, in Redis's words ("Protocol error: invalid bulk
/// length"); what arrived stays in the buffer.
#[inline(never)]
fn protocol_error(error: resp::Error) -> ReadOutcome {
    ReadOutcome::Failed {
        err: format!("Protocol error: {error}").into(),
        partial: false,
    }
}
