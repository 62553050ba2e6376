//! The Rust-side state of one service VM that Lua callbacks reach (through
//! `api::Shared::lock`): its connections, what the current slice wrote, the
//! sessions it asked to start, and the calls it owes answers to.
//!
//! Borrow rule: a callback borrows `State` only for its own duration and
//! never calls back into Lua code while holding it; the scheduler borrows it
//! only between resumes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lunet_core::connection::{Connection, Fill};
use memchr::memmem;
use mlua::{Function, MultiValue};

use crate::slab::Slab;

/// Bounds and settings shared by every service of a server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default longest line `readline` accepts (and `readuntil` scans).
    pub max_line: usize,
    /// Unsent bytes past which `write` waits for the peer.
    pub high_water: usize,
    /// How long a closed connection may take to flush its output and drain
    /// unread input before it is dropped.
    pub linger_ms: u64,
    /// How long a lane call may wait for a queue slot (0 = no limit).
    pub lane_timeout_ms: u64,
    /// The command line's key=value pairs (`lunet.getenv`).
    pub env: HashMap<String, String>,
    /// Where `lunet.spawn` looks for scripts not found from the current
    /// directory (the directory of the script given on the command line).
    pub script_dir: Option<std::path::PathBuf>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_line: 64 * 1024,
            high_water: 1024 * 1024,
            linger_ms: 10_000,
            lane_timeout_ms: 30_000,
            env: HashMap::new(),
            script_dir: None,
        }
    }
}

/// A read, validated: what it waits for and its bounds.
#[derive(Clone, Debug)]
pub enum ReadRequest {
    Line { max: usize },
    Exact { n: usize },
    Until { delim: Vec<u8>, max: usize },
    Some { max: usize },
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

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Outbound connect in progress.
    Connecting,
    Open,
    /// Closed by Lua: flushing output, then draining unread input.
    Closing,
}

pub struct ConnEntry {
    pub conn: Connection,
    pub phase: Phase,
    pub peer: Option<SocketAddr>,
    /// An accepted connection's place in the runtime's counts (counted
    /// down when the entry is dropped); `None` for outbound connections.
    pub count: Option<lunet_core::ConnectionCount>,
    /// Per-operation timeout (ms); 0 = none.
    pub timeout_ms: u64,
    /// Sessions waiting on this connection.
    pub reader: Option<u64>,
    /// Sessions waiting for the output to drain (or for a connect).
    pub writers: Vec<u64>,
    /// Queued in `State::dirty`.
    pub dirty: bool,
    /// Half-closed by us, now discarding input until EOF.
    pub draining: bool,
    /// A closing connection is dropped at this time whatever is left.
    pub linger_deadline: Option<u64>,
}

/// A session the running Lua code asked for (`lunet.fork`).
pub struct Spawn {
    pub function: Function,
    pub args: MultiValue,
}

pub struct State {
    pub settings: Arc<Settings>,
    pub conns: Slab<ConnEntry>,
    /// Connections the current slice wrote to: flushed when it yields.
    pub dirty: Vec<u64>,
    pub spawns: Vec<Spawn>,
    /// The server is stopping: reads of accepted connections that would
    /// wait on an empty buffer end with "closed".
    pub shutting_down: bool,
    /// `lunet.listen` calls so far per address (the n-th call of every host
    /// shares the n-th listener).
    pub listen_calls: HashMap<String, usize>,
    /// Calls being answered: session id -> (caller service, caller session).
    pub calls: HashMap<u64, (u64, u64)>,
    /// Calls whose answer was taken by `lunet.response()` and not yet sent.
    pub delayed: HashMap<(u64, u64), ()>,
    /// Sessions in `lunet.wait()`, by coroutine pointer.
    pub suspended: HashMap<usize, u64>,
    /// Sessions `lunet.wakeup` woke during this slice.
    pub wakeups: Vec<u64>,
    /// `lunet.dispatch` was called: the service serves messages.
    pub dispatch: bool,
    /// `lunet.exit()` was called (or the service was killed).
    pub exiting: bool,
    /// The read a fast path could not finish, validated: the session yields
    /// `(OP.READ, conn)` next and the scheduler takes it from here.
    pub pending_read: Option<(u64, ReadRequest)>,
}

impl State {
    pub fn new(settings: Arc<Settings>) -> State {
        State {
            settings,
            conns: Slab::default(),
            dirty: Vec::new(),
            spawns: Vec::new(),
            shutting_down: false,
            listen_calls: HashMap::new(),
            calls: HashMap::new(),
            delayed: HashMap::new(),
            suspended: HashMap::new(),
            wakeups: Vec::new(),
            dispatch: false,
            exiting: false,
            pending_read: None,
        }
    }

    pub fn mark_dirty(&mut self, id: u64) {
        if let Some(entry) = self.conns.get_mut(id) {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(id);
            }
        }
    }
}

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
        };
        if entry.conn.failed {
            return ReadOutcome::Failed {
                err: "reset",
                partial: true,
            };
        }
        if entry.conn.eof {
            return ReadOutcome::Failed {
                err: "closed",
                partial: true,
            };
        }
        if !entry.conn.readable || entry.phase == Phase::Connecting {
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
