//! Sessions: the coroutines of a VM, what each waits for, the ready queue,
//! and resuming them (steps 2 to 4 of the protocol in `mod.rs`).

use std::collections::VecDeque;
use std::sync::Arc;

use lunet_core::lane::Task;
use lunet_core::{now_ms, Event, Runtime, Service};
use mlua::{Function, MultiValue, Thread, Value};

use super::connections::close_conn;
use super::{vm, LuaService, StartError};
use crate::caps;
use crate::codec;
use crate::ids::{CallToken, ConnectionId, SessionId, TimerKey};
use crate::interrupt::killed_message;
use crate::lane::{build_task, LaneReply, Plain};
use crate::mail;
use crate::protocol::{MessageKind, Yielded};
use crate::read::{self, ReadRequest, Taken};
use crate::slab::Slab;
use crate::state::{Caller, ConnectionPhase, Fork, VmState};

/// Ready sessions resumed per event before the service yields its worker.
pub(super) const READY_BUDGET: usize = 4096;
/// Finished coroutines kept for reuse.
pub(super) const THREAD_POOL: usize = 256;

pub(super) enum Wait {
    /// Running, or on the ready queue.
    Ready,
    Read(ConnectionId, ReadRequest),
    /// For room in the output; what the writer costs in the socket's
    /// waiting room (`api::socket::admit`).
    Write(ConnectionId, usize),
    Connect(ConnectionId),
    Sleep,
    /// A lane task runs for this session (ticket = session id).
    Lane,
    /// The lane queue was full: the task waits here for a slot.
    LaneSlot(Task),
    /// Waits for the answer to a call (or a spawn) it made; the token
    /// names the call (see `ids::CallToken`).
    Call(CallToken),
    /// In `lunet.wait()` until `lunet.wakeup`.
    Suspended(usize),
}

pub(super) struct Session {
    pub(super) thread: Thread,
    pub(super) wait: Wait,
    pub(super) deadline: Option<u64>,
    /// Earliest deadline of this session's timers in the wheel.
    pub(super) timer_armed: Option<u64>,
    /// The connection a handler session serves: closed when it ends.
    pub(super) owned_conn: Option<ConnectionId>,
    /// It runs a dispatch for a call: `VmState::calls` has its caller
    /// (until `lunet.response()` takes it over).
    pub(super) answering: bool,
}

pub(super) enum ResumeWith {
    Nothing,
    True,
    Args(MultiValue),
    /// A read's answer: `data` or `nil, err [, partial]`.
    Read(read::ReadAnswer),
    Error(&'static str),
    Plain(Vec<Plain>),
    /// The call was misused: the Lua wrapper raises this message.
    Misuse(String),
}

/// A bare `coroutine.yield` reached the scheduler.
const FOREIGN_YIELD: &str =
    "a session yielded outside lunet's API (a bare coroutine.yield in a handler?): it was stopped";

/// How a slice ended.
enum SliceEnd {
    Yielded(Yielded),
    Ended(Ending),
}

/// A wait recorded in the state (on a connection, or in `lunet.wait`).
enum StateWait {
    Read(ConnectionId),
    Write(ConnectionId),
    Connect(ConnectionId),
    /// In `lunet.wait()` (by coroutine pointer), with a timeout in ms (0 =
    /// none).
    Suspended(usize, u64),
}

/// What the slice left behind, for after the state's borrow.
struct SliceLeft {
    caller: Option<Caller>,
    forks: Vec<Fork>,
    exiting: bool,
    dispatching: bool,
}

/// Records a wait on a connection (or in `lunet.wait`); a wait that cannot
/// be (the connection is gone) resumes the session at once with the error.
fn wait_on_state(
    state: &mut VmState,
    sched: &mut Sched,
    runtime: &Runtime,
    service: &Arc<Service>,
    sid: SessionId,
    wait: StateWait,
) {
    let registered = match wait {
        StateWait::Read(cid) => {
            let pending = state.pending_read.take();
            let shutting_down = state.shutting_down;
            match state.conns.get_mut(cid) {
                None => Err(ResumeWith::Error("closed")),
                Some(entry) => match pending {
                    Some((pending_cid, request)) if pending_cid == cid => {
                        // Another reader, a socket Lua closed, or (while the
                        // server stops) an accepted one with nothing left.
                        let closed = entry.reader.is_some()
                            || entry.phase == ConnectionPhase::Closing
                            || (shutting_down
                                && entry.count.is_some()
                                && entry.conn.input.is_empty());
                        if closed {
                            Err(ResumeWith::Error("closed"))
                        } else {
                            entry.reader = Some(sid);
                            Ok((Wait::Read(cid, request), entry.timeout_ms))
                        }
                    }
                    _ => Err(ResumeWith::Misuse(
                        "lunet: a read yielded without its request".into(),
                    )),
                },
            }
        }
        StateWait::Connect(cid) => match state.conns.get_mut(cid) {
            None => Err(ResumeWith::Error("closed")),
            Some(entry) => {
                entry.writers.push(sid);
                Ok((Wait::Connect(cid), entry.timeout_ms))
            }
        },
        StateWait::Write(cid) => {
            let cost = match state.pending_write.take() {
                Some((pending, cost)) if pending == cid => cost,
                _ => 0,
            };
            let write_timeout_ms = state.settings.write_timeout_ms;
            match state.conns.get_mut(cid) {
                None => Err(ResumeWith::Error("closed")),
                Some(entry) => {
                    entry.writers.push(sid);
                    entry.waiting_bytes = entry.waiting_bytes.saturating_add(cost);
                    // The socket's own timeout, else --write-timeout: past
                    // it the writer gets "overloaded" (`on_timer`).
                    let timeout_ms = match entry.timeout_ms {
                        0 => write_timeout_ms,
                        own => own,
                    };
                    Ok((Wait::Write(cid, cost), timeout_ms))
                }
            }
        }
        StateWait::Suspended(pointer, timeout_ms) => {
            state.suspended.insert(pointer, sid);
            Ok((Wait::Suspended(pointer), timeout_ms))
        }
    };
    match registered {
        Err(reply) => sched.ready.push_back((sid, reply)),
        Ok((wait, timeout_ms)) => {
            let Some(session) = sched.sessions.get_mut(sid) else {
                return;
            };
            session.wait = wait;
            if timeout_ms > 0 {
                arm_timeout(runtime, service, sid, session, timeout_ms);
            }
        }
    }
}

/// How a session ended.
pub(super) enum Ending {
    /// It returned these values.
    Returned(MultiValue),
    /// It raised (or was interrupted, or broke the protocol).
    Failed(String),
    /// It called `lunet.exit()`: the service exits after this slice.
    Exited,
}

/// Third value of a reply that the wrapper turns into an error (see
/// `lane_result` in prelude.lua).
pub(super) const MISUSE: &str = "lunet:misuse";

/// Sessions and the ready queue: the part of the scheduler Lua never sees.
#[derive(Default)]
pub(super) struct Sched {
    pub(super) sessions: Slab<SessionId, Session>,
    pub(super) ready: VecDeque<(SessionId, ResumeWith)>,
    /// Sessions whose lane task waits for a queue slot, in arrival order.
    pub(super) lane_blocked: VecDeque<SessionId>,
}

impl Sched {
    /// Marks a waiting session ready, dropping the connection's reference
    /// to it; false if it was not waiting (already ready, or gone). The
    /// caller queues it with its reply.
    pub(super) fn unlink(&mut self, state: &mut VmState, sid: SessionId) -> bool {
        let Some(session) = self.sessions.get_mut(sid) else {
            return false;
        };
        match std::mem::replace(&mut session.wait, Wait::Ready) {
            Wait::Ready => return false,
            Wait::Read(cid, _) => {
                if let Some(entry) = state.conns.get_mut(cid) {
                    if entry.reader == Some(sid) {
                        entry.reader = None;
                    }
                }
            }
            Wait::Write(cid, cost) => {
                if let Some(entry) = state.conns.get_mut(cid) {
                    entry.writers.retain(|&w| w != sid);
                    entry.waiting_bytes = entry.waiting_bytes.saturating_sub(cost);
                }
            }
            Wait::Connect(cid) => {
                if let Some(entry) = state.conns.get_mut(cid) {
                    entry.writers.retain(|&w| w != sid);
                }
            }
            Wait::Suspended(pointer) => {
                state.suspended.remove(&pointer);
            }
            Wait::Sleep | Wait::Lane | Wait::LaneSlot(_) | Wait::Call(_) => {}
        }
        session.deadline = None;
        true
    }

    /// Moves a waiting session to the ready queue with `reply`. A session
    /// already ready is left alone.
    pub(super) fn wake(&mut self, state: &mut VmState, sid: SessionId, reply: ResumeWith) {
        if self.unlink(state, sid) {
            self.ready.push_back((sid, reply));
        }
    }
}

/// Gives a waiting session a deadline `timeout_ms` from now. A timer is
/// added only if none of the session's timers fires by then (one that fires
/// early is re-armed by `on_timer`), so a session that waits often keeps at
/// most a couple of entries in the wheel.
pub(super) fn arm_timeout(
    runtime: &Runtime,
    service: &Arc<Service>,
    sid: SessionId,
    session: &mut Session,
    timeout_ms: u64,
) {
    let deadline = now_ms().saturating_add(timeout_ms);
    session.deadline = Some(deadline);
    if session.timer_armed.is_none_or(|armed| armed > deadline) {
        session.timer_armed = Some(deadline);
        runtime.add_timer(service, deadline, TimerKey::Session(sid).to_raw());
    }
}

impl LuaService {
    pub(super) fn new_session(
        &mut self,
        function: &Function,
        owned_conn: Option<ConnectionId>,
    ) -> Option<SessionId> {
        let thread = match self.threads.pop() {
            Some(thread) if thread.reset(function.clone()).is_ok() => thread,
            _ => self.created_coroutine(self.lua.create_thread(function.clone()))?,
        };
        Some(self.insert_session(thread, owned_conn))
    }

    /// A session of the dispatch function, for a message: as
    /// `new_session` (a pooled coroutine reset, or a new one), without one
    /// more clone of the function (a push and a pop on mlua's reference
    /// stack) per message.
    pub(super) fn new_dispatch_session(&mut self) -> Option<SessionId> {
        let thread = match self.threads.pop() {
            Some(thread) if thread.reset(self.dispatch.clone()).is_ok() => thread,
            _ => self.created_coroutine(self.lua.create_thread(self.dispatch.clone()))?,
        };
        Some(self.insert_session(thread, None))
    }

    fn created_coroutine(&self, created: mlua::Result<Thread>) -> Option<Thread> {
        match created {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::error!(service = %self.name, "cannot create a coroutine: {e}");
                None
            }
        }
    }

    fn insert_session(&mut self, thread: Thread, owned_conn: Option<ConnectionId>) -> SessionId {
        self.sched.sessions.insert(Session {
            thread,
            wait: Wait::Ready,
            deadline: None,
            timer_armed: None,
            owned_conn,
            answering: false,
        })
    }

    pub(super) fn drain_ready(&mut self, service: &Arc<Service>) {
        let mut budget = READY_BUDGET;
        while let Some((sid, reply)) = self.sched.ready.pop_front() {
            self.resume(service, sid, reply);
            if self.exiting {
                // Nothing more runs: `exit` answers what is owed.
                return;
            }
            budget -= 1;
            if budget == 0 && !self.sched.ready.is_empty() {
                // Let other services have the worker; come back for the rest.
                self.runtime.post(
                    service,
                    Event::Message(lunet_core::Message::signal(MessageKind::Continue.code())),
                );
                return;
            }
        }
    }

    pub(super) fn resume(&mut self, service: &Arc<Service>, sid: SessionId, reply: ResumeWith) {
        let Some(session) = self.sched.sessions.get(sid) else {
            return;
        };
        // Borrowed, not cloned: a clone of a Lua reference is a push and a pop
        // on mlua's reference stack, on every resume.
        let thread = &session.thread;
        self.interrupt.enter(thread, sid);
        let result = match reply {
            ResumeWith::Nothing => thread.resume::<MultiValue>(()),
            ResumeWith::True => thread.resume::<MultiValue>(true),
            ResumeWith::Args(args) => thread.resume::<MultiValue>(args),
            ResumeWith::Read(answer) => thread.resume::<MultiValue>(answer),
            ResumeWith::Error(err) => thread.resume::<MultiValue>((Value::Nil, err)),
            ResumeWith::Misuse(err) => thread.resume::<MultiValue>((Value::Nil, err, MISUSE)),
            ResumeWith::Plain(values) => {
                let mut args = MultiValue::with_capacity(values.len());
                for value in values {
                    match value.into_lua(&self.lua) {
                        Ok(value) => args.push_back(value),
                        Err(e) => {
                            args.clear();
                            args.push_back(Value::Nil);
                            // Under a memory limit even the message may not fit.
                            args.push_back(
                                self.lua
                                    .create_string(e.to_string())
                                    .map_or(Value::Nil, Value::String),
                            );
                            break;
                        }
                    }
                }
                thread.resume::<MultiValue>(args)
            }
        };
        // Yielded, rather than returned or failed: read off the thread
        // directly (mlua's `status()` takes the VM's lock and walks the
        // stack, on every resume).
        // SAFETY: the thread belongs to this VM, which runs on this thread
        // only, and is not running (its resume has returned).
        let resumable = unsafe { mlua::ffi::lua_status(thread.state()) } == mlua::ffi::LUA_YIELD;
        let killed = self.interrupt.leave();
        // What the slice piled up goes back to the system once the session
        // is done with it, not at the VM's next collection (`memory.rs`,
        // step 4).
        let reclaim = killed | self.memory.take_failure();
        self.reclaiming |= reclaim;
        let end = match result {
            // The error escaped as raised (with its traceback) unless
            // something on the way replaced it.
            Err(e) if killed && e.to_string().contains(&killed_message()) => {
                SliceEnd::Ended(Ending::Failed(e.to_string()))
            }
            Err(e) if killed => {
                SliceEnd::Ended(Ending::Failed(format!("{}: {e}", killed_message())))
            }
            _ if killed => SliceEnd::Ended(Ending::Failed(killed_message())),
            Ok(values) if resumable => match Yielded::decode(values) {
                Some(yielded) => SliceEnd::Yielded(yielded),
                None => SliceEnd::Ended(Ending::Failed(FOREIGN_YIELD.into())),
            },
            Ok(values) => SliceEnd::Ended(Ending::Returned(values)),
            Err(e) => SliceEnd::Ended(Ending::Failed(e.to_string())),
        };
        self.end_slice(service, sid, end);
        if reclaim {
            self.reclaiming = false;
            self.memory.reclaim(&self.lua);
        }
    }

    /// Steps 2 and 4 of the protocol: what the session waits for (or how
    /// it ended), then what the slice left behind (wakeups, writes to
    /// flush, sockets to close, forks), with one access to the state.
    fn end_slice(&mut self, service: &Arc<Service>, sid: SessionId, end: SliceEnd) {
        let mut ending = None;
        let mut waits_on_state = None;
        match end {
            SliceEnd::Ended(how) => ending = Some(how),
            SliceEnd::Yielded(Yielded::Exit) => {
                self.exiting = true;
                ending = Some(Ending::Exited);
            }
            SliceEnd::Yielded(Yielded::Wait {
                coroutine,
                timeout_ms,
            }) => {
                // The coroutine that waits: the session's own, or a user
                // coroutine inside it (lunet.wakeup names that one).
                let pointer = match (coroutine, self.sched.sessions.get(sid)) {
                    (Some(co), _) => co.to_pointer() as usize,
                    (None, Some(session)) => session.thread.to_pointer() as usize,
                    (None, None) => return,
                };
                waits_on_state = Some(StateWait::Suspended(pointer, timeout_ms.unwrap_or(0)));
            }
            SliceEnd::Yielded(Yielded::Read { conn }) => {
                waits_on_state = Some(StateWait::Read(conn))
            }
            SliceEnd::Yielded(Yielded::Write { conn }) => {
                waits_on_state = Some(StateWait::Write(conn))
            }
            SliceEnd::Yielded(Yielded::Connect { conn }) => {
                waits_on_state = Some(StateWait::Connect(conn))
            }
            // A lane task is built from Lua values, which may run Lua code
            // (__index): never inside the state's borrow.
            SliceEnd::Yielded(yielded) => self.wait_without_state(service, sid, yielded),
        }
        let (owned_conn, answering) = match (&ending, self.sched.sessions.get(sid)) {
            (Some(_), Some(session)) => (session.owned_conn, session.answering),
            _ => (None, false),
        };
        // After lunet.exit() the call stays owed: `exit` answers it with an
        // error, as every call the service leaves unanswered.
        let answers = answering && !matches!(ending, Some(Ending::Exited));
        let (sched, runtime, dirty) = (&mut self.sched, &self.runtime, &mut self.dirty);
        let left = vm(|state| {
            // The call the ending session answers (unless `lunet.response()`
            // took it over).
            let caller = if answers {
                state.calls.remove(&sid)
            } else {
                None
            };
            if let Some(wait) = waits_on_state {
                wait_on_state(state, sched, runtime, service, sid, wait);
            }
            if let Some(cid) = owned_conn {
                close_conn(state, sched, runtime, service, cid);
            }
            for woken in std::mem::take(&mut state.wakeups) {
                sched.wake(state, woken, ResumeWith::Nothing);
            }
            // Flush what the slice wrote: one write syscall per connection.
            // (The dirty list is swapped with a kept buffer: no allocation.)
            let mut closing = Vec::new();
            if !state.dirty.is_empty() {
                std::mem::swap(&mut state.dirty, dirty);
                for &cid in dirty.iter() {
                    let Some(entry) = state.conns.get_mut(cid) else {
                        continue;
                    };
                    entry.dirty = false;
                    match entry.phase {
                        ConnectionPhase::Open => {
                            let _ = entry.conn.flush();
                        }
                        ConnectionPhase::Closing => closing.push(cid),
                        ConnectionPhase::Connecting | ConnectionPhase::Pooled => {}
                    }
                }
                dirty.clear();
            }
            if !state.collected.is_empty() {
                closing.append(&mut state.collected);
            }
            for cid in closing {
                close_conn(state, sched, runtime, service, cid);
            }
            SliceLeft {
                caller,
                forks: if state.forks.is_empty() {
                    Vec::new()
                } else {
                    std::mem::take(&mut state.forks)
                },
                // lunet.exit() where it cannot yield, lunet.kill(lunet.self()).
                exiting: state.exiting,
                dispatching: state.dispatch,
            }
        });
        self.exiting |= left.exiting;
        self.dispatching |= left.dispatching;
        if let Some(how) = ending {
            self.finish(service, sid, how, left.caller);
        }
        for fork in left.forks {
            if let Some(forked) = self.new_session(&fork.function, None) {
                self.sched
                    .ready
                    .push_back((forked, ResumeWith::Args(fork.args)));
            }
        }
    }

    /// Waits that do not involve the state: a lane task, a call's answer,
    /// a sleep.
    fn wait_without_state(&mut self, service: &Arc<Service>, sid: SessionId, yielded: Yielded) {
        let (wait, timeout_ms) = match yielded {
            Yielded::Lane { op, args } => {
                // Checked here, not only in the wrappers: a script can
                // yield a lane call by hand.
                let (capability, what) = caps::lane_capability(op);
                if !self.caps.allows(capability) {
                    let refusal = caps::denied(what, capability).to_string();
                    self.sched
                        .ready
                        .push_back((sid, ResumeWith::Misuse(refusal)));
                    return;
                }
                let task = match build_task(op, &args) {
                    Ok(task) => task,
                    Err(e) => {
                        // Misuse (a table as a bind value...): the wrapper raises.
                        self.sched
                            .ready
                            .push_back((sid, ResumeWith::Misuse(e.to_string())));
                        return;
                    }
                };
                let lane_timeout = self.settings.lane_timeout_ms;
                let Some(session) = self.sched.sessions.get_mut(sid) else {
                    return;
                };
                match self.runtime.lane_submit(service, sid.to_raw(), task) {
                    Ok(()) => session.wait = Wait::Lane,
                    Err(task) => {
                        session.wait = Wait::LaneSlot(task);
                        self.sched.lane_blocked.push_back(sid);
                        if lane_timeout > 0 {
                            arm_timeout(&self.runtime, service, sid, session, lane_timeout);
                        }
                    }
                }
                return;
            }
            // A call with a timeout (`lunet.call_timeout`): the timer
            // resumes it with "timeout"; the answer that comes later no
            // longer matches the wait (see `ids::CallToken`) and is dropped.
            Yielded::Call { token, timeout_ms } => (Wait::Call(token), timeout_ms.unwrap_or(0)),
            Yielded::Sleep { ms } if ms.is_nan() || ms <= 0.0 => {
                self.sched.ready.push_back((sid, ResumeWith::Nothing));
                return;
            }
            Yielded::Sleep { ms } => (Wait::Sleep, ms.ceil().min(1e15) as u64),
            _ => unreachable!("waits on the state are registered by wait_on_state"),
        };
        let Some(session) = self.sched.sessions.get_mut(sid) else {
            return;
        };
        session.wait = wait;
        if timeout_ms > 0 {
            arm_timeout(&self.runtime, service, sid, session, timeout_ms);
        }
    }

    /// A session has ended: answer the call it was answering (`caller`),
    /// report a failed start or log the error, pool its coroutine. (The
    /// connection it served was closed by `end_slice`.)
    fn finish(
        &mut self,
        service: &Arc<Service>,
        sid: SessionId,
        ending: Ending,
        caller: Option<Caller>,
    ) {
        let Some(session) = self.sched.sessions.remove(sid) else {
            return;
        };
        // The call gets the session's return values (or its error).
        if let Some(caller) = caller {
            let answer = match &ending {
                Ending::Returned(values) => {
                    let mut payload = codec::payload();
                    Some(
                        match codec::encode(values.iter(), &mut payload, self.socket_key) {
                            Ok(()) => (MessageKind::Response, payload),
                            Err(e) => (
                                MessageKind::Error,
                                mail::error_payload(&format!("the answer could not be sent: {e}")),
                            ),
                        },
                    )
                }
                Ending::Failed(error) => Some((MessageKind::Error, mail::error_payload(error))),
                Ending::Exited => None,
            };
            if let Some((kind, payload)) = answer {
                self.answer(caller, kind, payload);
            }
        }
        match ending {
            Ending::Failed(error) => {
                if self.main_session == Some(sid)
                    && (self.startup.is_some() || self.main_reply.is_some())
                {
                    if let Some(startup) = self.startup.take() {
                        let _ = startup.send(Err(StartError {
                            message: error.clone(),
                        }));
                    }
                    if let Some(caller) = self.main_reply.take() {
                        self.answer(caller, MessageKind::Error, mail::error_payload(&error));
                        // A service whose start failed does not live on.
                        self.exiting = true;
                    }
                } else {
                    tracing::error!(service = %self.name, handle = service.id(), "session error: {error}");
                }
            }
            // The main chunk has started well once it returns (it may yield
            // on the way, e.g. to open a database): then `lunet serve` goes
            // on and `lunet.spawn` returns.
            Ending::Returned(_) if self.main_session == Some(sid) => {
                // Loading leaves garbage behind; an idle service should not keep it.
                let _ = self.lua.gc_collect();
                if let Some(startup) = self.startup.take() {
                    let _ = startup.send(Ok(()));
                }
                if let Some(caller) = self.main_reply.take() {
                    let mut payload = codec::payload();
                    let _ =
                        codec::encode([Value::Boolean(true)].iter(), &mut payload, self.socket_key);
                    self.answer(caller, MessageKind::Response, payload);
                }
            }
            Ending::Returned(_) | Ending::Exited => {}
        }
        // A coroutine that ended in an error keeps its stack until reset:
        // one whose memory is being reclaimed is let go instead.
        if self.threads.len() < THREAD_POOL && !self.reclaiming {
            self.threads.push(session.thread);
        }
    }

    pub(super) fn on_timer(&mut self, service: &Arc<Service>, key: TimerKey) {
        let now = now_ms();
        let sid = match key {
            TimerKey::Session(sid) => sid,
            TimerKey::Connection(cid) => {
                self.on_connection_timer(service, cid, now);
                return;
            }
        };
        let Some(session) = self.sched.sessions.get_mut(sid) else {
            return;
        };
        session.timer_armed = None;
        let Some(deadline) = session.deadline else {
            return;
        };
        if deadline > now {
            session.timer_armed = Some(deadline);
            self.runtime
                .add_timer(service, deadline, TimerKey::Session(sid).to_raw());
            return;
        }
        let (sched, bytes) = (&mut self.sched, &mut self.bytes);
        let timed_out_read = vm(|state| {
            let reply = match &sched.sessions.get(sid)?.wait {
                Wait::Sleep => ResumeWith::Nothing,
                Wait::Ready | Wait::Lane => return None,
                // As OpenResty: a read that times out hands back what arrived.
                Wait::Read(cid, request) if request.returns_partial() => {
                    match state.conns.get_mut(*cid) {
                        Some(entry) => {
                            read::take_all(entry, bytes);
                            sched.unlink(state, sid);
                            return Some(Taken::Failed {
                                err: "timeout".into(),
                                partial: true,
                            });
                        }
                        None => ResumeWith::Error("timeout"),
                    }
                }
                // Nothing of the write was queued (`api::socket::admit`).
                Wait::Write(..) => ResumeWith::Error("overloaded"),
                _ => ResumeWith::Error("timeout"),
            };
            sched.wake(state, sid, reply);
            None
        });
        if let Some(taken) = timed_out_read {
            self.ready_with_read(sid, taken);
        }
    }

    pub(super) fn on_lane_done(&mut self, sid: SessionId, result: Box<dyn std::any::Any + Send>) {
        let Some(session) = self.sched.sessions.get(sid) else {
            return;
        };
        if !matches!(session.wait, Wait::Lane) {
            return;
        }
        let reply = match result.downcast::<LaneReply>() {
            Ok(reply) => ResumeWith::Plain(reply.0),
            Err(_) => ResumeWith::Error("lane task failed"),
        };
        let sched = &mut self.sched;
        vm(|state| sched.wake(state, sid, reply));
    }

    /// A lane slot freed: submit parked tasks in arrival order.
    pub(super) fn on_lane_slot(&mut self, service: &Arc<Service>) {
        while let Some(sid) = self.sched.lane_blocked.pop_front() {
            let Some(session) = self.sched.sessions.get_mut(sid) else {
                continue;
            };
            let Wait::LaneSlot(task) = std::mem::replace(&mut session.wait, Wait::Lane) else {
                continue;
            };
            match self.runtime.lane_submit(service, sid.to_raw(), task) {
                Ok(()) => session.deadline = None,
                Err(task) => {
                    session.wait = Wait::LaneSlot(task);
                    self.sched.lane_blocked.push_front(sid);
                    return;
                }
            }
        }
    }
}
