//! The scheduler of one Lua VM: a [`ServiceBody`] whose sessions are Lua
//! coroutines. Its rooms:
//!
//! - `build.rs`: building a VM (the `lunet` module, the prelude, the
//!   sandbox, the script) and checking a script;
//! - `sessions.rs`: sessions, what they wait for, the ready queue, resuming
//!   them and what follows each slice;
//! - `connections.rs`: the life of a connection: accepted, ready, closing,
//!   lingering, dropped;
//! - `inbox.rs`: messages from other services, answers owed, and exit;
//! - `runtime.rs`: the runtime model's messages (Subs, event deliveries,
//!   attachments, module reloads).
//!
//! Protocol of a blocking call (the other half is in `prelude.lua`):
//! 1. A wrapper calls a Rust fast path (`api/`). If the answer is at hand
//!    (bytes buffered, socket readable now) it returns at once: no yield.
//! 2. Otherwise the wrapper yields an operation (`protocol::Op`):
//!    `(OP.READ, conn)`, `(OP.WRITE, conn)`, `(OP.SLEEP, ms)`, ... The
//!    resume returns those values here; `register_wait` decodes them
//!    (`protocol::Yielded`), records what the session waits for and arms
//!    its timer.
//! 3. Events (readiness, timers) satisfy waits; a satisfied session goes on
//!    the ready queue with the values to resume it with, and `drain_ready`
//!    resumes it: they are what its `coroutine.yield` returns.
//! 4. After every slice the connections it wrote to are flushed (one write
//!    syscall each), sockets it closed are closed, sessions it forked start.
//!
//! Ids (sessions, connections, calls, timers) are typed in `ids.rs`. A
//! session keeps at most a couple of timers in the wheel however often it
//! waits: a timer that fires early is re-armed.

mod build;
mod connections;
mod inbox;
mod runtime;
mod sessions;

use std::collections::VecDeque;
use std::sync::Arc;

use lunet_core::{Event, Runtime, Service, ServiceBody, Status};
use mlua::{Function, Lua, Table, Thread};

use crate::caps::Caps;
use crate::codec::SocketMeta;
use crate::ids::{ConnectionId, SessionId, TimerKey};
use crate::interrupt::LuaInterrupt;
use crate::mail;
use crate::memory::VmMemory;
use crate::protocol::MessageKind;
use crate::settings::Settings;
use crate::state::{with_own_state, Caller, ConnectionPhase, OwnedState, VmState};

pub use build::{
    check_script, BuildError, Script, ScriptError, ServiceOptions, StartError, Startup,
};
use sessions::Sched;

/// A Lua VM run as a service: the body `lunet serve` hosts and
/// `lunet.spawn` starts are made of.
pub struct LuaService {
    lua: Lua,
    /// Its allocator and bound (`memory.rs`).
    memory: VmMemory,
    /// What it may reach (`caps.rs`); also in its state, for callbacks.
    caps: Caps,
    /// What the VM owns besides its Lua values (see `state.rs`).
    state: OwnedState,
    runtime: Runtime,
    settings: Arc<Settings>,
    name: String,
    /// This service's handle (0 until it first runs).
    self_id: u64,
    sched: Sched,
    threads: Vec<Thread>,
    run_handler: Function,
    main: Option<Function>,
    main_session: Option<SessionId>,
    startup: Option<Startup>,
    /// Runs `lunet.dispatch`'s function for a message.
    dispatch: Function,
    /// A runtime's functions of the model's Lua half (`None`: not a
    /// runtime; such a VM runs no Sub and reloads no module).
    model: Option<crate::model::ModelHalves>,
    /// A runtime's Sub and attach messages that came before its modules
    /// were loaded (model step 1): handled once they are.
    early: Vec<lunet_core::Message>,
    /// The metatable of socket objects, to make those a message hands over,
    /// and its address, to tell them apart when encoding.
    socket_meta: Table,
    socket_key: SocketMeta,
    interrupt: Arc<LuaInterrupt>,
    /// Who spawned us and waits for our main chunk's first slice.
    main_reply: Option<Caller>,
    /// Told to exit (`lunet.exit()`, a kill, a failed start): nothing more
    /// runs; the turn ends and the service exits.
    exiting: bool,
    /// `lunet.dispatch` was called (as of the last slice).
    dispatching: bool,
    exited: bool,
    /// Kept buffer for `after_slice` (swapped with `VmState::dirty`).
    dirty: Vec<ConnectionId>,
    /// Kept buffer for the answers of reads that waited (see `read.rs`).
    bytes: Vec<u8>,
    /// The slice that ends now failed an allocation or was interrupted: its
    /// memory is reclaimed after it (`memory.rs`).
    reclaiming: bool,
}

impl Drop for LuaService {
    fn drop(&mut self) {
        // mlua's allocator frees what is left when the VM closes.
        self.memory.uninstall(&self.lua);
    }
}

/// The scheduler's access to the VM's state. It cannot be refused: the
/// scheduler runs between resumes, when no callback holds the state.
fn vm<R>(f: impl FnOnce(&mut VmState) -> R) -> R {
    match with_own_state(f) {
        Ok(result) => result,
        Err(e) => panic!("{e}"),
    }
}

impl LuaService {
    /// True when the service exits now: it was told to, or nothing can ever
    /// wake it again (no session, no dispatch function, no listener, no
    /// connection).
    fn done(&self) -> bool {
        let quiet =
            self.sched.sessions.is_empty() && self.sched.ready.is_empty() && self.main.is_none();
        self.exiting
            || vm(|state| {
                state.exiting
                    || (quiet
                        && !state.dispatch
                        && !state.model.serves()
                        && state.listen_calls.is_empty()
                        && state
                            .conns
                            .values()
                            .all(|entry| entry.phase == ConnectionPhase::Pooled))
            })
    }
}

impl ServiceBody for LuaService {
    fn run(&mut self, service: &Arc<Service>, events: &mut VecDeque<Event>) -> Status {
        let _turn = self.state.begin_turn();
        if self.self_id == 0 {
            self.self_id = service.id();
            vm(|state| {
                state.service = Arc::downgrade(service);
                state.self_id = service.id();
            });
            self.interrupt.set_name(&self.name, service.id());
            service.set_interrupt(self.interrupt.clone());
        }
        while let Some(event) = events.pop_front() {
            match event {
                Event::Io { slot, readiness } => self.on_io(service, slot, readiness),
                Event::Accept { listener, accepted } => self.on_accept(service, listener, accepted),
                Event::LaneSlot => self.on_lane_slot(service),
                Event::Timer { id } => self.on_timer(service, TimerKey::from_raw(id)),
                Event::Message(message) => self.on_message(service, message),
                Event::LaneDone { ticket, result } => {
                    self.on_lane_done(SessionId::from_raw(ticket), result)
                }
                Event::Shutdown => self.on_shutdown(),
            }
            if !self.sched.ready.is_empty() && !self.exiting {
                self.drain_ready(service);
            }
            if self.exiting {
                break;
            }
        }
        if !self.early.is_empty() && !self.exiting {
            self.handle_early(service);
        }
        if self.done() {
            // What is left of the batch is not dispatched: callers get errors.
            let rest = std::mem::take(events);
            self.bounce(service, rest);
            return Status::Exited;
        }
        // For the console and `/metrics` (lunet_core::stats): two stores.
        service
            .stats()
            .publish(self.memory.used(), self.sched.sessions.len());
        Status::Alive
    }

    fn bounce(&mut self, service: &Arc<Service>, events: VecDeque<Event>) {
        let _turn = self.state.begin_turn();
        self.exit(service);
        for event in events {
            match event {
                Event::Message(message)
                    if MessageKind::from_byte(message.kind)
                        .is_some_and(MessageKind::expects_answer)
                        || (message.kind == MessageKind::Start.code() && message.session != 0) =>
                {
                    let text = format!("service :{} ({}) has exited", service.id(), self.name);
                    self.answer(
                        Caller::of(&message),
                        MessageKind::Error,
                        mail::error_payload(&text),
                    );
                }
                _ => {}
            }
        }
    }
}
