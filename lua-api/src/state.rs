//! The Rust-side state of one service VM: its connections, what the
//! current slice wrote, the sessions it forked, the calls it owes answers
//! to. The VM owns it ([`OwnedState`], a field of the `LuaService`) and
//! lends it to its callbacks for the length of its turn on a worker.
//!
//! Protocol:
//! 1. A VM's turn (`LuaService::run`, `bounce`) begins with
//!    [`OwnedState::begin_turn`]: the state is published in this thread's
//!    slot until the [`Turn`] ends. A VM runs on one thread at a time and
//!    its Lua code runs only inside its turn, so its callbacks find their
//!    own state there; they check it is theirs (the `Lua` they get is the
//!    VM's identity).
//! 2. Callbacks and the scheduler reach the state only through
//!    [`with_state`] (or the scheduler's `vm`), which takes it out of the
//!    slot for the closure and puts it back: a nested access finds the slot
//!    empty and gets an error, never a second `&mut`.
//! 3. Borrow rule, which makes that nesting impossible by construction:
//!    the closure gets `&mut VmState` and no `Lua`, and nothing inside it
//!    runs Lua code or allocates Lua memory (Lua values are made after it
//!    returns: a read's answer is first copied out of the buffer, see
//!    `read.rs`). A `__gc` finalizer runs only inside a Lua allocation, so
//!    it can never find the state taken, whatever socket method it calls.
//! 4. Outside a turn (a VM being built or dropped: its last finalizers run
//!    then) the slot holds no state of that VM, and a callback gets an
//!    error.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ptr;
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
    /// Idle in an outbound pool (`sock:setkeepalive`, see `pool.rs`).
    Pooled,
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
    /// Sessions waiting for room in the output (or for a connect), in
    /// the order they came (`api/socket.rs`, `admit`).
    pub writers: Vec<SessionId>,
    /// What the waiting writers would queue, each counted with its session
    /// (`api::socket::WAITER_COST`): bounded by the high-water mark.
    pub waiting_bytes: usize,
    /// Queued in `VmState::dirty`.
    pub dirty: bool,
    /// Half-closed by us, now discarding input until EOF.
    pub draining: bool,
    /// A closing connection is dropped at this time whatever is left.
    pub linger_deadline: Option<u64>,
    /// The HTTP exchange of a `lunet.http` server connection (dropped
    /// with the connection).
    pub http: Option<Box<crate::http::Exchange>>,
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
            waiting_bytes: 0,
            dirty: false,
            draining: false,
            linger_deadline: None,
            http: None,
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
    /// The VM's identity: the address of the `Lua` its callbacks get.
    vm: usize,
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
    /// `lunet.on_shutdown` hooks, run once when the service starts
    /// draining (see `host/connections.rs`, `on_shutdown`).
    pub shutdown_hooks: Vec<Function>,
    /// It has started draining.
    pub draining: bool,
    /// What this service may reach (see `caps.rs`).
    pub caps: crate::caps::Caps,
    /// Bytes its VM may allocate beyond the fresh VM (`None`: no bound);
    /// what its children get by default and at most (if it is sandboxed).
    pub memory_limit: Option<usize>,
    /// Pays for what it writes in shared dicts (see `dict.rs`).
    pub dict_account: Option<Arc<lunet_core::shared_dict::Account>>,
    /// Services it spawned (the ones `lunet.kill` reaches without `kill`).
    /// Ids are never reused; gone ones are pruned as the set grows.
    pub children: HashSet<u64>,
    children_pruned_at: usize,
    /// Outbound connections kept for reuse (see `pool.rs`).
    pub pool: crate::pool::Pool,
    /// The read a fast path could not finish, validated: the session yields
    /// `(OP.READ, conn)` next and the scheduler takes it from here.
    pub pending_read: Option<(ConnectionId, ReadRequest)>,
    /// The runtime model's part: modules, Subs, events, state, storage.
    pub model: crate::model::ModelState,
    /// A write that must wait for room, as `admit` found it: the
    /// connection and what the writer costs while it waits. Taken by the
    /// wait it yields for (`OP.WRITE`).
    pub pending_write: Option<(ConnectionId, usize)>,
}

impl VmState {
    /// The state of the VM `lua` (see [`vm_identity`]).
    pub fn new(vm: usize, settings: Arc<Settings>, running: Arc<LuaInterrupt>) -> VmState {
        VmState {
            vm,
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
            shutdown_hooks: Vec::new(),
            draining: false,
            caps: crate::caps::Caps::all(),
            memory_limit: None,
            dict_account: None,
            children: HashSet::new(),
            children_pruned_at: 64,
            pool: crate::pool::Pool::default(),
            pending_read: None,
            model: crate::model::ModelState::default(),
            pending_write: None,
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

    /// Notes a service it spawned; forgets the gone ones each time the set
    /// doubles, so it stays as small as the children alive.
    pub fn add_child(&mut self, runtime: &lunet_core::Runtime, id: u64) {
        self.children.insert(id);
        if self.children.len() >= self.children_pruned_at {
            self.children
                .retain(|child| runtime.service(*child).is_some());
            self.children_pruned_at = (self.children.len() * 2).max(64);
        }
    }

    /// The service running this VM, while it lives.
    pub fn service(&self) -> Option<Arc<Service>> {
        self.service.upgrade()
    }
}

/// Why the state could not be reached: only a bug gets here (see the
/// protocol above).
#[derive(Debug, thiserror::Error)]
#[error("lunet: internal error: the VM's state is not available here")]
pub struct StateUnavailable;

impl From<StateUnavailable> for mlua::Error {
    fn from(e: StateUnavailable) -> mlua::Error {
        mlua::Error::runtime(e.to_string())
    }
}

/// The identity of a VM as its callbacks see it: the address of the `Lua`
/// they are given (mlua keeps one per VM for them).
pub fn vm_identity(lua: &Lua) -> mlua::Result<usize> {
    lua.create_function(|lua, ()| Ok(lua as *const Lua as usize))?
        .call(())
}

thread_local! {
    /// The state of the VM whose turn runs on this thread (step 1), or null.
    static TURN: Cell<*mut VmState> = const { Cell::new(ptr::null_mut()) };
}

/// A VM's state, owned by the VM; reachable only during its turns.
pub struct OwnedState(Box<VmState>);

impl OwnedState {
    pub fn new(state: VmState) -> OwnedState {
        OwnedState(Box::new(state))
    }

    /// Step 1: publishes the state on this thread until the turn ends.
    pub fn begin_turn(&mut self) -> Turn {
        let state: *mut VmState = &mut *self.0;
        Turn {
            previous: TURN.replace(state),
        }
    }
}

/// A VM's turn on this thread; the state is withdrawn when it ends (also
/// on unwind).
pub struct Turn {
    previous: *mut VmState,
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURN.set(self.previous);
    }
}

/// Puts the state back in the slot after a borrow (also on unwind).
struct Lent(*mut VmState);

impl Drop for Lent {
    fn drop(&mut self) {
        TURN.set(self.0);
    }
}

/// Step 2: lends the published state to `f` if `mine` accepts it.
#[inline]
fn lend<R>(
    mine: impl FnOnce(&VmState) -> bool,
    f: impl FnOnce(&mut VmState) -> R,
) -> Result<R, StateUnavailable> {
    let state = TURN.replace(ptr::null_mut());
    if state.is_null() {
        return Err(StateUnavailable);
    }
    let _lent = Lent(state);
    // SAFETY: a non-null slot holds the state of the VM whose turn runs on
    // this thread: `begin_turn` published it from the `Box` the VM owns, and
    // the `Turn` withdraws it before the VM can be dropped or moved to
    // another thread (its turn is a call of `run`/`bounce` on `&mut self`,
    // and the turn guard lives inside that call). Taking the pointer out of
    // the slot makes this the only `&mut` to it until `_lent` puts it back;
    // the VM touches its state through this function only.
    let state = unsafe { &mut *state };
    if !mine(state) {
        return Err(StateUnavailable);
    }
    Ok(f(state))
}

/// The one way a callback reaches its VM's state (see the protocol above).
#[inline]
pub fn with_state<R>(lua: &Lua, f: impl FnOnce(&mut VmState) -> R) -> Result<R, StateUnavailable> {
    with_state_of(lua as *const Lua as usize, f)
}

/// [`with_state`] for a raw C function, which has no `Lua`: `vm` is the
/// identity of the VM it was made in ([`vm_identity`]).
#[inline]
pub fn with_state_of<R>(
    vm: usize,
    f: impl FnOnce(&mut VmState) -> R,
) -> Result<R, StateUnavailable> {
    lend(|state| state.vm == vm, f)
}

/// The scheduler's way, during its own turn.
#[inline]
pub fn with_own_state<R>(f: impl FnOnce(&mut VmState) -> R) -> Result<R, StateUnavailable> {
    lend(|_| true, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_of(lua: &Lua) -> OwnedState {
        let identity = vm_identity(lua).unwrap();
        OwnedState::new(VmState::new(
            identity,
            Arc::new(Settings::default()),
            Arc::new(LuaInterrupt::new()),
        ))
    }

    #[test]
    fn a_vm_reaches_its_state_only_during_its_turn_and_only_once_at_a_time() {
        let lua = Lua::new();
        let other = Lua::new();
        let mut state = state_of(&lua);
        let get = lua
            .create_function(|lua, ()| Ok(with_state(lua, |state| state.next_call).is_ok()))
            .unwrap();
        let foreign = other
            .create_function(|lua, ()| Ok(with_state(lua, |state| state.next_call).is_ok()))
            .unwrap();
        assert!(!get.call::<bool>(()).unwrap(), "outside a turn");
        {
            let _turn = state.begin_turn();
            assert!(
                get.call::<bool>(()).unwrap(),
                "its own callback, in its turn"
            );
            assert!(!foreign.call::<bool>(()).unwrap(), "another VM's callback");
            let nested = with_own_state(|_| get.call::<bool>(()).unwrap()).unwrap();
            assert!(!nested, "a second borrow while the state is lent");
            assert!(get.call::<bool>(()).unwrap(), "lent back after the borrow");
        }
        assert!(!get.call::<bool>(()).unwrap(), "after the turn");
    }
}
