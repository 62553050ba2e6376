//! The Rust-side state of one service VM: its connections, what the
//! current slice wrote, the sessions it forked, the calls it owes answers
//! to. The VM owns it: it lives in the VM's app data (`Lua::set_app_data`)
//! and goes with the VM.
//!
//! Borrow rule, which makes re-entrance impossible by construction: the
//! state is reached only through [`with_state`], whose closure gets
//! `&mut VmState` and no `Lua`. Nothing inside it runs Lua code or
//! allocates Lua memory (Lua values are made after it returns: a read's
//! answer is first copied out of the buffer, see `read.rs`). A `__gc`
//! finalizer runs only inside a Lua allocation, so it can never find the
//! state borrowed, whatever socket method it calls.
//!
//! Closing rule: while a VM closes ([`close_vm`]) its finalizers run one
//! last time, and mlua's app data must not be touched then (the access
//! takes a new reference to the `Lua` being dropped). [`with_state`]
//! refuses during that window, so a finalizer's socket call gets an error
//! instead of reaching a VM that is going away.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use lunet_core::connection::Connection;
use lunet_core::Service;
use mlua::{Function, Lua, MultiValue};

use crate::ids::{CallToken, ConnectionId, SessionId};
use crate::interrupt::LuaInterrupt;
use crate::read::ReadRequest;
use crate::settings::Settings;
use crate::slab::Slab;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionPhase {
    /// Outbound connect in progress.
    Connecting,
    Open,
    /// Closed by Lua: flushing output, then draining unread input.
    Closing,
}

pub struct ConnEntry {
    pub conn: Connection,
    pub phase: ConnectionPhase,
    pub peer: Option<SocketAddr>,
    /// An accepted connection's place in the runtime's counts (counted
    /// down when the entry is dropped); `None` for outbound connections.
    pub count: Option<lunet_core::ConnectionCount>,
    /// Per-operation timeout (ms); 0 = none.
    pub timeout_ms: u64,
    /// The session waiting to read from this connection.
    pub reader: Option<SessionId>,
    /// Sessions waiting for the output to drain (or for a connect).
    pub writers: Vec<SessionId>,
    /// Queued in `VmState::dirty`.
    pub dirty: bool,
    /// Half-closed by us, now discarding input until EOF.
    pub draining: bool,
    /// A closing connection is dropped at this time whatever is left.
    pub linger_deadline: Option<u64>,
}

impl ConnEntry {
    /// A connection nobody waits on yet.
    pub fn new(
        conn: Connection,
        phase: ConnectionPhase,
        peer: Option<SocketAddr>,
        count: Option<lunet_core::ConnectionCount>,
        timeout_ms: u64,
    ) -> ConnEntry {
        ConnEntry {
            conn,
            phase,
            peer,
            count,
            timeout_ms,
            reader: None,
            writers: Vec::new(),
            dirty: false,
            draining: false,
            linger_deadline: None,
        }
    }
}

/// A session the running Lua code asked for (`lunet.fork`).
pub struct Fork {
    pub function: Function,
    pub args: MultiValue,
}

/// Who waits for an answer: the calling service and its call's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    pub service: u64,
    pub token: CallToken,
}

impl Caller {
    /// Who sent `message` (a call or a spawn's start) and waits.
    pub fn of(message: &lunet_core::Message) -> Caller {
        Caller {
            service: message.source,
            token: CallToken::from_raw(message.session),
        }
    }
}

pub struct VmState {
    pub settings: Arc<Settings>,
    /// The service running this VM (set when it first runs).
    pub service: Weak<Service>,
    /// Its handle (0 until it first runs).
    pub self_id: u64,
    /// What this VM runs now (set around every resume): callbacks that need
    /// to know which session calls (`lunet.call`, `lunet.response`) ask it.
    pub running: Arc<LuaInterrupt>,
    /// Sequence of outgoing calls (see [`VmState::next_call_token`]).
    pub next_call: u32,
    pub conns: Slab<ConnectionId, ConnEntry>,
    /// Connections the current slice wrote to: flushed when it yields.
    pub dirty: Vec<ConnectionId>,
    pub forks: Vec<Fork>,
    /// Sockets whose Lua object was collected: closed after the slice.
    pub collected: Vec<ConnectionId>,
    /// The server is stopping: reads of accepted connections that would
    /// wait on an empty buffer end with "closed".
    pub shutting_down: bool,
    /// `lunet.listen` calls so far per address (the n-th call of every host
    /// shares the n-th listener).
    pub listen_calls: HashMap<String, usize>,
    /// Calls being answered, by the session that answers
    /// (`lunet.response()` takes the running session's).
    pub calls: HashMap<SessionId, Caller>,
    /// Calls whose answer was taken by `lunet.response()` and not yet sent.
    pub delayed: HashSet<Caller>,
    /// Sessions in `lunet.wait()`, by coroutine pointer.
    pub suspended: HashMap<usize, SessionId>,
    /// Sessions `lunet.wakeup` woke during this slice.
    pub wakeups: Vec<SessionId>,
    /// `lunet.dispatch` was called: the service serves messages.
    pub dispatch: bool,
    /// `lunet.exit()` was called (or the service was killed).
    pub exiting: bool,
    /// The read a fast path could not finish, validated: the session yields
    /// `(OP.READ, conn)` next and the scheduler takes it from here.
    pub pending_read: Option<(ConnectionId, ReadRequest)>,
}

impl VmState {
    pub fn new(settings: Arc<Settings>, running: Arc<LuaInterrupt>) -> VmState {
        VmState {
            settings,
            running,
            service: Weak::new(),
            self_id: 0,
            next_call: 1,
            conns: Slab::default(),
            dirty: Vec::new(),
            forks: Vec::new(),
            collected: Vec::new(),
            shutting_down: false,
            listen_calls: HashMap::new(),
            calls: HashMap::new(),
            delayed: HashSet::new(),
            suspended: HashMap::new(),
            wakeups: Vec::new(),
            dispatch: false,
            exiting: false,
            pending_read: None,
        }
    }

    pub fn mark_dirty(&mut self, id: ConnectionId) {
        if let Some(entry) = self.conns.get_mut(id) {
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// A token for the next call the current session makes.
    pub fn next_call_token(&mut self) -> CallToken {
        let sequence = self.next_call;
        self.next_call = self.next_call.wrapping_add(1);
        CallToken::new(self.running.session(), sequence)
    }

    /// The service running this VM, while it lives.
    pub fn service(&self) -> Option<Arc<Service>> {
        self.service.upgrade()
    }
}

/// Why the state could not be reached: only a bug gets here (the state is
/// installed with the VM, and the borrow rule keeps it free whenever Lua
/// runs).
#[derive(Debug, thiserror::Error)]
#[error("lunet: internal error: the VM's state is missing or in use")]
pub struct StateUnavailable;

impl From<StateUnavailable> for mlua::Error {
    fn from(e: StateUnavailable) -> mlua::Error {
        mlua::Error::runtime(e.to_string())
    }
}

thread_local! {
    /// A VM is closing on this thread (see the closing rule above).
    static CLOSING: Cell<bool> = const { Cell::new(false) };
}

/// The one way to reach a VM's state (see the borrow rule above).
#[inline]
pub fn with_state<R>(lua: &Lua, f: impl FnOnce(&mut VmState) -> R) -> Result<R, StateUnavailable> {
    if CLOSING.get() {
        return Err(StateUnavailable);
    }
    match lua.try_app_data_mut::<VmState>() {
        Ok(Some(mut state)) => Ok(f(&mut state)),
        _ => Err(StateUnavailable),
    }
}

/// Drops a VM (its last `Lua` handle), with [`with_state`] refusing while
/// its finalizers run.
pub fn close_vm(lua: Lua) {
    CLOSING.set(true);
    drop(lua);
    CLOSING.set(false);
}
