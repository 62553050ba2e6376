//! The scheduler of one Lua VM: a [`ServiceBody`] whose sessions are Lua
//! coroutines.
//!
//! Protocol of a blocking call (the other half is in `prelude.lua`):
//! 1. A wrapper calls a Rust fast path (`api.rs`). If the answer is at hand
//!    (bytes buffered, socket readable now) it returns at once: no yield.
//! 2. Otherwise the wrapper yields an operation (`protocol::Op`):
//!    `(OP.READ, conn)`, `(OP.WRITE, conn)`, `(OP.SLEEP, ms)`, ... The
//!    resume returns those values here; [`LuaService::register_wait`] records
//!    what the session waits for and arms its timer.
//! 3. Events (readiness, timers) satisfy waits; a satisfied session goes on
//!    the ready queue with its reply, and `drain_ready` resumes it with the
//!    reply as the values its `coroutine.yield` returns.
//! 4. After every slice the connections it wrote to are flushed (one write
//!    syscall each), sockets it closed are closed, sessions it forked start.
//!
//! Timer ids: a session's is `session_id << 1`, a closing connection's is
//! `conn_id << 1 | 1`. A session keeps at most a couple of timers in the
//! wheel however often it waits: a timer that fires early is re-armed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use lunet_core::connection::{Connection, Fill};
use lunet_core::{now_ms, Event, Readiness, Runtime, Service, ServiceBody, Status};
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Thread, Value};

use crate::api::{self, connect_word, take_read, Shared};
use crate::codec;
use crate::interrupt::{killed_message, LuaInterrupt};
use crate::lane::{build_task, LaneReply, Plain};
use crate::protocol::{MessageKind, Yielded};
use crate::services;
use crate::slab::{index_of, Slab};
use crate::state::{try_read, ConnEntry, Phase, ReadOutcome, ReadRequest, Settings, State};
use lunet_core::lane::Task;

/// Ready sessions resumed per event before the service yields its worker.
const READY_BUDGET: usize = 4096;
/// Finished coroutines kept for reuse.
const THREAD_POOL: usize = 256;

enum Wait {
    /// Running, or on the ready queue.
    Ready,
    Read(u64, ReadRequest),
    Write(u64),
    Connect(u64),
    Sleep,
    /// A lane task runs for this session (ticket = session id).
    Lane,
    /// The lane queue was full: the task waits here for a slot.
    LaneSlot(Task),
    /// Waits for the answer to a call (or a spawn) it made; the token
    /// names the call (see `services::call_token`).
    Call(u64),
    /// In `lunet.wait()` until `lunet.wakeup`.
    Suspended(usize),
}

struct Session {
    thread: Thread,
    wait: Wait,
    deadline: Option<u64>,
    /// Earliest deadline of this session's timers in the wheel.
    timer_armed: Option<u64>,
    /// The connection a handler session serves: closed when it ends.
    owned_conn: Option<u64>,
}

enum Reply {
    Nothing,
    True,
    Args(MultiValue),
    Read(Value, Option<&'static str>, Option<mlua::LuaString>),
    Error(&'static str),
    Plain(Vec<Plain>),
    /// The call was misused: the Lua wrapper raises this message.
    Misuse(String),
}

/// Third value of a reply that the wrapper turns into an error (see
/// `lane_result` in prelude.lua).
const MISUSE: &str = "lunet:misuse";

/// Sessions and the ready queue: the part of the scheduler Lua never sees.
#[derive(Default)]
struct Sched {
    sessions: Slab<Session>,
    ready: VecDeque<(u64, Reply)>,
    /// Sessions whose lane task waits for a queue slot, in arrival order.
    lane_blocked: VecDeque<u64>,
}

impl Sched {
    /// Moves a waiting session to the ready queue with `reply`, dropping the
    /// connection's reference to it. A session already ready is left alone.
    fn wake(&mut self, state: &mut State, sid: u64, reply: Reply) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        match std::mem::replace(&mut session.wait, Wait::Ready) {
            Wait::Ready => return,
            Wait::Read(cid, _) => {
                if let Some(entry) = state.conns.get_mut(cid) {
                    if entry.reader == Some(sid) {
                        entry.reader = None;
                    }
                }
            }
            Wait::Write(cid) | Wait::Connect(cid) => {
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
        self.ready.push_back((sid, reply));
    }
}

/// Gives a waiting session a deadline `timeout_ms` from now. A timer is
/// added only if none of the session's timers fires by then (one that fires
/// early is re-armed by `on_timer`), so a session that waits often keeps at
/// most a couple of entries in the wheel.
fn arm_timeout(
    runtime: &Runtime,
    service: &Arc<Service>,
    sid: u64,
    session: &mut Session,
    timeout_ms: u64,
) {
    let deadline = now_ms().saturating_add(timeout_ms);
    session.deadline = Some(deadline);
    if session.timer_armed.is_none_or(|armed| armed > deadline) {
        session.timer_armed = Some(deadline);
        runtime.add_timer(service, deadline, sid << 1);
    }
}

pub struct LuaService {
    lua: Lua,
    shared: Shared,
    name: String,
    sched: Sched,
    threads: Vec<Thread>,
    run_handler: Function,
    main: Option<Function>,
    main_session: Option<u64>,
    startup: Option<mpsc::Sender<Result<(), String>>>,
    /// Runs `lunet.dispatch`'s function for a message.
    dispatch: Function,
    interrupt: Arc<LuaInterrupt>,
    /// Who spawned us and waits for our main chunk's first slice.
    main_reply: Option<(u64, u64)>,
    exited: bool,
    /// Kept buffer for `after_slice` (swapped with `State::dirty`).
    dirty: Vec<u64>,
}

/// How a service's VM is set up.
#[derive(Clone, Copy, Debug)]
pub struct ServiceOptions {
    /// Full standard library (hosts, `lunet run`, `spawn{trusted=true}`);
    /// otherwise no `io`, `debug`, `os.execute` and friends, text-only `load`.
    pub trusted: bool,
    /// Bytes the script may allocate beyond the fresh VM; the allocation
    /// that crosses it fails with a Lua error.
    pub memory_limit: Option<usize>,
}

impl ServiceOptions {
    pub fn trusted() -> ServiceOptions {
        ServiceOptions {
            trusted: true,
            memory_limit: None,
        }
    }
}

/// Where a new Lua service starts.
pub struct Script {
    /// Name used in chunk names and logs.
    pub path: String,
    pub source: Vec<u8>,
}

/// `prelude.lua` compiled once per process, without debug info: every VM
/// loads the same bytecode, which saves compiling it again and ~15 KB of
/// line tables per VM (a service's idle footprint matters when there are
/// thousands). Errors in user code still carry their positions.
fn prelude_bytecode() -> &'static [u8] {
    static BYTECODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTECODE.get_or_init(|| {
        let lua = Lua::new();
        lua.load(include_str!("prelude.lua"))
            .set_name("@lunet/prelude.lua")
            .into_function()
            .map(|f| f.dump(true))
            .expect("prelude.lua compiles (checked by the unit tests)")
    })
}

/// Compiles a script without running it: syntax errors come back as text.
pub fn check_script(script: &Script) -> Result<(), String> {
    let lua = Lua::new();
    lua.load(&script.source[..])
        .set_name(format!("@{}", script.path))
        .into_function()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl LuaService {
    /// Builds a VM with the `lunet` module and `script` compiled, ready to run
    /// it when the service gets `MessageKind::Start`.
    pub fn new(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<mpsc::Sender<Result<(), String>>>,
    ) -> Result<LuaService, String> {
        Self::with_setup(runtime, name, settings, script, startup, &|_| Ok(()))
    }

    /// Like [`LuaService::new`], with `setup` run on the fresh VM after the
    /// `lunet` module exists and before the script is compiled: the way an
    /// embedder (the connector) adds modules of its own, e.g. through
    /// `package.loaded`.
    pub fn with_setup(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<mpsc::Sender<Result<(), String>>>,
        setup: &dyn Fn(&Lua) -> mlua::Result<()>,
    ) -> Result<LuaService, String> {
        Self::build(
            runtime,
            name,
            settings,
            script,
            startup,
            ServiceOptions::trusted(),
            setup,
        )
    }

    /// The general constructor: `options` say whether the script is trusted
    /// (full standard library) or sandboxed, and its memory limit.
    pub fn build(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<mpsc::Sender<Result<(), String>>>,
        options: ServiceOptions,
        setup: &dyn Fn(&Lua) -> mlua::Result<()>,
    ) -> Result<LuaService, String> {
        let lua = if options.trusted {
            // SAFETY: a trusted script is the operator's own code (as in
            // OpenResty): it gets the whole standard library, `debug`
            // included; what it loads is its business.
            unsafe { Lua::unsafe_new_with(StdLib::ALL_SAFE | StdLib::DEBUG, LuaOptions::default()) }
        } else {
            Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default()).map_err(|e| e.to_string())?
        };
        let shared = Shared {
            state: Arc::new(Mutex::new(State::new(settings))),
            runtime: runtime.clone(),
            service: Arc::new(Mutex::new(None)),
            collected: Arc::new(Mutex::new(Vec::new())),
            has_collected: Arc::new(AtomicBool::new(false)),
            current: Arc::new(AtomicU64::new(0)),
            next_call: Arc::new(std::sync::atomic::AtomicU32::new(1)),
        };
        let setup = || -> mlua::Result<(Function, Function, Function)> {
            let core = api::build(&lua, &shared)?;
            let (run_handler, dispatch): (Function, Function) = lua
                .load(prelude_bytecode())
                .set_name("@lunet/prelude.lua")
                .set_mode(mlua::chunk::ChunkMode::Binary)
                .call(core)?;
            if !options.trusted {
                lua.load(include_str!("sandbox.lua"))
                    .set_name("@lunet/sandbox.lua")
                    .exec()?;
            }
            setup(&lua)?;
            let main = lua
                .load(&script.source[..])
                .set_name(format!("@{}", script.path))
                .into_function()?;
            Ok((run_handler, dispatch, main))
        };
        let (run_handler, dispatch, main) = setup().map_err(|e| e.to_string())?;
        if let Some(limit) = options.memory_limit {
            let used = lua.used_memory();
            lua.set_memory_limit(used + limit)
                .map_err(|e| e.to_string())?;
        }
        Ok(LuaService {
            dispatch,
            interrupt: Arc::new(LuaInterrupt::new()),
            main_reply: None,
            exited: false,
            dirty: Vec::new(),
            lua,
            shared,
            name: name.to_string(),
            sched: Sched::default(),
            threads: Vec::new(),
            run_handler,
            main: Some(main),
            main_session: None,
            startup,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_session(&mut self, function: &Function, owned_conn: Option<u64>) -> Option<u64> {
        let thread = match self.threads.pop() {
            Some(thread) if thread.reset(function.clone()).is_ok() => thread,
            _ => match self.lua.create_thread(function.clone()) {
                Ok(thread) => thread,
                Err(e) => {
                    tracing::error!(service = %self.name, "cannot create a coroutine: {e}");
                    return None;
                }
            },
        };
        Some(self.sched.sessions.insert(Session {
            thread,
            wait: Wait::Ready,
            deadline: None,
            timer_armed: None,
            owned_conn,
        }))
    }

    fn drain_ready(&mut self, service: &Arc<Service>) {
        let mut budget = READY_BUDGET;
        while let Some((sid, reply)) = self.sched.ready.pop_front() {
            self.resume(service, sid, reply);
            budget -= 1;
            if budget == 0 && !self.sched.ready.is_empty() {
                // Let other services have the worker; come back for the rest.
                self.shared.runtime.post(
                    service,
                    Event::Message(lunet_core::Message::signal(MessageKind::Continue.code())),
                );
                return;
            }
        }
    }

    fn resume(&mut self, service: &Arc<Service>, sid: u64, reply: Reply) {
        let Some(session) = self.sched.sessions.get(sid) else {
            return;
        };
        // Borrowed, not cloned: a clone of a Lua reference is a push and a pop
        // on mlua's reference stack, on every resume.
        let thread = &session.thread;
        self.shared.current.store(sid, Ordering::Relaxed);
        self.interrupt.enter(thread);
        let result = match reply {
            Reply::Nothing => thread.resume::<MultiValue>(()),
            Reply::True => thread.resume::<MultiValue>(true),
            Reply::Args(args) => thread.resume::<MultiValue>(args),
            Reply::Read(data, err, partial) => thread.resume::<MultiValue>((data, err, partial)),
            Reply::Error(err) => thread.resume::<MultiValue>((Value::Nil, err)),
            Reply::Misuse(err) => thread.resume::<MultiValue>((Value::Nil, err, MISUSE)),
            Reply::Plain(values) => {
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
        let resumable = thread.status() == ThreadStatus::Resumable;
        let killed = self.interrupt.leave();
        // The main chunk has started well once it returns (it may yield on
        // the way, e.g. to open a database): then `lunet serve` goes on and
        // `lunet.spawn` returns. An error before that fails the start.
        let main_done = match result {
            Ok(_) if killed => {
                self.finish(service, sid, Some(killed_message()), MultiValue::new());
                false
            }
            Ok(values) if resumable => {
                self.register_wait(service, sid, values);
                false
            }
            Ok(values) => {
                self.finish(service, sid, None, values);
                true
            }
            Err(e) => {
                let message = if killed {
                    killed_message()
                } else {
                    e.to_string()
                };
                self.finish(service, sid, Some(message), MultiValue::new());
                false
            }
        };
        if main_done && self.main_session == Some(sid) {
            // Loading leaves garbage behind; an idle service should not keep it.
            let _ = self.lua.gc_collect();
            if let Some(startup) = self.startup.take() {
                let _ = startup.send(Ok(()));
            }
            if let Some((to, session)) = self.main_reply.take() {
                let mut payload = Vec::new();
                let _ = codec::encode([Value::Boolean(true)].iter(), &mut payload);
                services::answer(&self.shared, to, session, MessageKind::Response, payload);
            }
        }
        self.after_slice(service);
    }

    /// Step 2 of the protocol: what did the session yield for?
    fn register_wait(&mut self, service: &Arc<Service>, sid: u64, values: MultiValue) {
        let Some(yielded) = Yielded::decode(values) else {
            self.finish(
                service,
                sid,
                Some(
                    "a session yielded outside lunet's API (a bare coroutine.yield in a \
                     handler?): it was stopped"
                        .into(),
                ),
                MultiValue::new(),
            );
            return;
        };
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        let (wait, timeout_ms) = match yielded {
            Yielded::Read { conn: cid } => {
                let pending = state.pending_read.take();
                let shutting_down = state.shutting_down;
                let Some(entry) = state.conns.get_mut(cid) else {
                    self.sched.ready.push_back((sid, Reply::Error("closed")));
                    return;
                };
                let request = match pending {
                    Some((pending_cid, request)) if pending_cid == cid => request,
                    _ => {
                        self.sched.ready.push_back((
                            sid,
                            Reply::Misuse("lunet: a read yielded without its request".into()),
                        ));
                        return;
                    }
                };
                if entry.reader.is_some() || entry.phase == Phase::Closing {
                    self.sched.ready.push_back((sid, Reply::Error("closed")));
                    return;
                }
                if shutting_down && entry.count.is_some() && entry.conn.input.is_empty() {
                    self.sched.ready.push_back((sid, Reply::Error("closed")));
                    return;
                }
                entry.reader = Some(sid);
                (Wait::Read(cid, request), entry.timeout_ms)
            }
            Yielded::Write { conn: cid } | Yielded::Connect { conn: cid } => {
                let connect = matches!(yielded, Yielded::Connect { .. });
                let Some(entry) = state.conns.get_mut(cid) else {
                    self.sched.ready.push_back((sid, Reply::Error("closed")));
                    return;
                };
                entry.writers.push(sid);
                let wait = if connect {
                    Wait::Connect(cid)
                } else {
                    Wait::Write(cid)
                };
                (wait, entry.timeout_ms)
            }
            Yielded::Lane { op, args } => {
                let lane_timeout = state.settings.lane_timeout_ms;
                drop(state);
                let task = match build_task(op, &args) {
                    Ok(task) => task,
                    Err(e) => {
                        // Misuse (a table as a bind value...): the wrapper raises.
                        self.sched.ready.push_back((sid, Reply::Misuse(e)));
                        return;
                    }
                };
                let Some(session) = self.sched.sessions.get_mut(sid) else {
                    return;
                };
                match self.shared.runtime.lane_submit(service, sid, task) {
                    Ok(()) => session.wait = Wait::Lane,
                    Err(task) => {
                        session.wait = Wait::LaneSlot(task);
                        self.sched.lane_blocked.push_back(sid);
                        if lane_timeout > 0 {
                            arm_timeout(&self.shared.runtime, service, sid, session, lane_timeout);
                        }
                    }
                }
                return;
            }
            Yielded::Call { token } => (Wait::Call(token), 0),
            Yielded::Wait { coroutine } => {
                // The coroutine that waits: the session's own, or a user
                // coroutine inside it (lunet.wakeup names that one).
                let pointer = match (coroutine, self.sched.sessions.get(sid)) {
                    (Some(co), _) => co.to_pointer() as usize,
                    (None, Some(session)) => session.thread.to_pointer() as usize,
                    (None, None) => return,
                };
                state.suspended.insert(pointer, sid);
                (Wait::Suspended(pointer), 0)
            }
            Yielded::Exit => {
                state.exiting = true;
                drop(state);
                self.finish(service, sid, None, MultiValue::new());
                return;
            }
            Yielded::Sleep { ms } => {
                if ms.is_nan() || ms <= 0.0 {
                    self.sched.ready.push_back((sid, Reply::Nothing));
                    return;
                }
                (Wait::Sleep, ms.ceil().min(1e15) as u64)
            }
        };
        drop(state);
        let Some(session) = self.sched.sessions.get_mut(sid) else {
            return;
        };
        session.wait = wait;
        if timeout_ms > 0 {
            arm_timeout(&self.shared.runtime, service, sid, session, timeout_ms);
        }
    }

    fn finish(
        &mut self,
        service: &Arc<Service>,
        sid: u64,
        error: Option<String>,
        values: MultiValue,
    ) {
        let Some(session) = self.sched.sessions.remove(sid) else {
            return;
        };
        // A call this session was answering gets its return values (or the error).
        let call = self.lock().calls.remove(&sid);
        if let Some((to, caller_session)) = call {
            let (kind, payload) = match &error {
                Some(error) => (MessageKind::Error, services::error_payload(error)),
                None => {
                    let mut payload = Vec::new();
                    match codec::encode(values.iter(), &mut payload) {
                        Ok(()) => (MessageKind::Response, payload),
                        Err(e) => (
                            MessageKind::Error,
                            services::error_payload(&format!("the answer could not be sent: {e}")),
                        ),
                    }
                }
            };
            services::answer(&self.shared, to, caller_session, kind, payload);
        }
        if let Some(error) = error {
            if self.main_session == Some(sid)
                && (self.startup.is_some() || self.main_reply.is_some())
            {
                if let Some(startup) = self.startup.take() {
                    let _ = startup.send(Err(error.clone()));
                }
                if let Some((to, session)) = self.main_reply.take() {
                    services::answer(
                        &self.shared,
                        to,
                        session,
                        MessageKind::Error,
                        services::error_payload(&error),
                    );
                    // A service whose start failed does not live on.
                    self.lock().exiting = true;
                }
            } else {
                tracing::error!(service = %self.name, handle = service.id(), "session error: {error}");
            }
        }
        if let Some(cid) = session.owned_conn {
            self.close_conn(service, cid);
        }
        if self.threads.len() < THREAD_POOL {
            self.threads.push(session.thread);
        }
    }

    /// Step 4: flush what the slice wrote, close what it closed, start what
    /// it forked.
    fn after_slice(&mut self, service: &Arc<Service>) {
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        if !state.wakeups.is_empty() {
            for sid in std::mem::take(&mut state.wakeups) {
                self.sched.wake(&mut state, sid, Reply::Nothing);
            }
        }
        // Flush what the slice wrote: one write syscall per connection.
        // (The dirty list is swapped with a kept buffer: no allocation.)
        let mut closing = Vec::new();
        if !state.dirty.is_empty() {
            std::mem::swap(&mut state.dirty, &mut self.dirty);
            for &cid in &self.dirty {
                let Some(entry) = state.conns.get_mut(cid) else {
                    continue;
                };
                entry.dirty = false;
                match entry.phase {
                    Phase::Open => {
                        let _ = entry.conn.flush();
                    }
                    Phase::Closing => closing.push(cid),
                    Phase::Connecting => {}
                }
            }
            self.dirty.clear();
        }
        let spawns = if state.spawns.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut state.spawns)
        };
        drop(state);
        if self.shared.has_collected.swap(false, Ordering::AcqRel) {
            let collected = std::mem::take(
                &mut *self
                    .shared
                    .collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            closing.extend(collected);
        }
        for cid in closing {
            self.close_conn(service, cid);
        }
        for spawn in spawns {
            if let Some(sid) = self.new_session(&spawn.function, None) {
                self.sched.ready.push_back((sid, Reply::Args(spawn.args)));
            }
        }
    }

    /// Closes a connection: wakes whoever waits on it, then flushes and
    /// drains it (see `advance_close`).
    fn close_conn(&mut self, service: &Arc<Service>, cid: u64) {
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = state.conns.get_mut(cid) else {
            return;
        };
        entry.phase = Phase::Closing;
        let mut waiters = std::mem::take(&mut entry.writers);
        waiters.extend(entry.reader.take());
        for sid in waiters {
            self.sched.wake(&mut state, sid, Reply::Error("closed"));
        }
        self.advance_close(service, &mut state, cid);
    }

    /// A closing connection: flush what is left; if the peer sent data we
    /// never read, half-close and discard input until it closes too (a plain
    /// close with unread input sends RST, which can destroy our last answer
    /// before the peer reads it); drop it at the linger deadline regardless.
    fn advance_close(&mut self, service: &Arc<Service>, state: &mut State, cid: u64) {
        let linger_ms = state.settings.linger_ms;
        let Some(entry) = state.conns.get_mut(cid) else {
            return;
        };
        let mut done = entry.conn.failed;
        if !done {
            let _ = entry.conn.flush();
            done = entry.conn.failed;
        }
        if !done && entry.conn.output.is_empty() {
            if !entry.draining {
                entry.conn.input.clear();
                let unread = !entry.conn.eof && matches!(entry.conn.fill(64 * 1024), Fill::Data(_));
                if unread {
                    let _ = entry.conn.stream.shutdown(std::net::Shutdown::Write);
                    entry.draining = true;
                } else {
                    done = true;
                }
            }
            if entry.draining {
                // Bounded per call; the linger deadline bounds the whole.
                for _ in 0..16 {
                    entry.conn.input.clear();
                    match entry.conn.fill(64 * 1024) {
                        Fill::Data(_) => continue,
                        Fill::WouldBlock => break,
                        Fill::Closed | Fill::Reset => {
                            done = true;
                            break;
                        }
                    }
                }
                entry.conn.input.clear();
            }
        }
        if done {
            self.drop_conn(service, state, cid);
            return;
        }
        if entry.linger_deadline.is_none() {
            let deadline = now_ms() + linger_ms;
            entry.linger_deadline = Some(deadline);
            self.shared
                .runtime
                .add_timer(service, deadline, (cid << 1) | 1);
        }
    }

    fn drop_conn(&mut self, _service: &Arc<Service>, state: &mut State, cid: u64) {
        // Dropping the entry closes the socket and counts it down.
        state.conns.remove(cid);
    }

    fn on_accept(&mut self, service: &Arc<Service>, listener: u32, accepted: lunet_core::Accepted) {
        let lunet_core::Accepted {
            stream,
            peer,
            count,
        } = accepted;
        let cid = {
            let mut state = self.lock();
            let cid = state.conns.insert(ConnEntry {
                conn: Connection::new(stream),
                phase: Phase::Open,
                peer: Some(peer),
                count: Some(count),
                timeout_ms: 0,
                reader: None,
                writers: Vec::new(),
                dirty: false,
                draining: false,
                linger_deadline: None,
            });
            let token = lunet_core::reactor::token(service.index(), index_of(cid));
            let entry = state.conns.get_mut(cid).expect("just inserted");
            if let Err(e) = self.shared.runtime.registry().register(
                &mut entry.conn.stream,
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            ) {
                tracing::error!(service = %self.name, "cannot register connection from {peer}: {e}");
                state.conns.remove(cid);
                return;
            }
            cid
        };
        let handler = self.run_handler.clone();
        match self.new_session(&handler, Some(cid)) {
            Some(sid) => {
                let args = MultiValue::from_vec(vec![
                    Value::Integer(listener as i64),
                    Value::Integer(cid as i64),
                ]);
                self.sched.ready.push_back((sid, Reply::Args(args)));
            }
            None => self.close_conn(service, cid),
        }
    }

    fn on_io(&mut self, service: &Arc<Service>, slot: u32, readiness: Readiness) {
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cid) = state.conns.id_at(slot) else {
            return;
        };
        let high_water = state.settings.high_water;
        let entry = state.conns.get_mut(cid).expect("id_at found it");
        if readiness.is_readable() {
            entry.conn.readable = true;
        }
        if readiness.is_hangup() {
            entry.conn.hangup = true;
        }
        if readiness.is_writable() {
            entry.conn.writable = true;
        }
        match entry.phase {
            Phase::Closing => self.advance_close(service, &mut state, cid),
            Phase::Connecting => {
                if !readiness.is_writable() {
                    return;
                }
                let result = match entry.conn.stream.take_error() {
                    Ok(Some(e)) | Err(e) => Err(e),
                    Ok(None) => match entry.conn.stream.peer_addr() {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return,
                        Err(e) => Err(e),
                    },
                };
                let writers = std::mem::take(&mut entry.writers);
                match result {
                    Ok(()) => {
                        entry.phase = Phase::Open;
                        for sid in writers {
                            self.sched.wake(&mut state, sid, Reply::True);
                        }
                    }
                    Err(e) => {
                        entry.conn.failed = true;
                        let word = connect_word(&e).unwrap_or("connect failed");
                        for sid in writers {
                            self.sched.wake(&mut state, sid, Reply::Error(word));
                        }
                    }
                }
            }
            Phase::Open => {
                if !entry.conn.output.is_empty() && entry.conn.writable {
                    let _ = entry.conn.flush();
                }
                if !entry.writers.is_empty()
                    && (entry.conn.failed || entry.conn.output.len() <= high_water / 2)
                {
                    let failed = entry.conn.failed;
                    for sid in std::mem::take(&mut entry.writers) {
                        let reply = if failed {
                            Reply::Error("closed")
                        } else {
                            Reply::True
                        };
                        self.sched.wake(&mut state, sid, reply);
                    }
                }
                let entry = state.conns.get_mut(cid).expect("still there");
                if let Some(sid) = entry.reader {
                    let Some(session) = self.sched.sessions.get(sid) else {
                        entry.reader = None;
                        return;
                    };
                    let Wait::Read(_, kind) = &session.wait else {
                        entry.reader = None;
                        return;
                    };
                    let outcome = try_read(entry, kind);
                    if matches!(outcome, ReadOutcome::Wait) {
                        return;
                    }
                    match take_read(&self.lua, entry, outcome) {
                        Ok((data, err, partial)) => {
                            self.sched
                                .wake(&mut state, sid, Reply::Read(data, err, partial))
                        }
                        Err(_) => self.sched.wake(&mut state, sid, Reply::Error("no memory")),
                    }
                }
            }
        }
    }

    fn on_timer(&mut self, service: &Arc<Service>, id: u64) {
        let now = now_ms();
        if id & 1 == 1 {
            let cid = id >> 1;
            let state_cell = self.shared.state.clone();
            let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
            let expired = state.conns.get(cid).is_some_and(|e| {
                e.phase == Phase::Closing && e.linger_deadline.is_some_and(|d| d <= now)
            });
            if expired {
                self.drop_conn(service, &mut state, cid);
            }
            return;
        }
        let sid = id >> 1;
        let Some(session) = self.sched.sessions.get_mut(sid) else {
            return;
        };
        session.timer_armed = None;
        let Some(deadline) = session.deadline else {
            return;
        };
        if deadline > now {
            session.timer_armed = Some(deadline);
            self.shared.runtime.add_timer(service, deadline, sid << 1);
            return;
        }
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        let reply = match &session.wait {
            Wait::Sleep => Reply::Nothing,
            Wait::Ready | Wait::Lane => return,
            // As OpenResty: a read that times out hands back what arrived.
            Wait::Read(cid, kind) if !matches!(kind, ReadRequest::Some { .. }) => {
                match state.conns.get_mut(*cid) {
                    Some(entry) => {
                        let partial = self.lua.create_string(entry.conn.input.as_slice()).ok();
                        let len = entry.conn.input.len();
                        entry.conn.input.consume(len);
                        Reply::Read(Value::Nil, Some("timeout"), partial)
                    }
                    None => Reply::Error("timeout"),
                }
            }
            _ => Reply::Error("timeout"),
        };
        self.sched.wake(&mut state, sid, reply);
    }

    fn on_shutdown(&mut self) {
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        state.shutting_down = true;
        for cid in state.conns.ids() {
            let Some(entry) = state.conns.get(cid) else {
                continue;
            };
            if entry.count.is_some() && entry.conn.input.is_empty() {
                if let Some(sid) = entry.reader {
                    self.sched.wake(&mut state, sid, Reply::Error("closed"));
                }
            }
        }
    }

    fn on_lane_done(&mut self, sid: u64, result: Box<dyn std::any::Any + Send>) {
        let Some(session) = self.sched.sessions.get(sid) else {
            return;
        };
        if !matches!(session.wait, Wait::Lane) {
            return;
        }
        let reply = match result.downcast::<LaneReply>() {
            Ok(reply) => Reply::Plain(reply.0),
            Err(_) => Reply::Error("lane task failed"),
        };
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        self.sched.wake(&mut state, sid, reply);
    }

    /// A lane slot freed: submit parked tasks in arrival order.
    fn on_lane_slot(&mut self, service: &Arc<Service>) {
        while let Some(sid) = self.sched.lane_blocked.pop_front() {
            let Some(session) = self.sched.sessions.get_mut(sid) else {
                continue;
            };
            let Wait::LaneSlot(task) = std::mem::replace(&mut session.wait, Wait::Lane) else {
                continue;
            };
            match self.shared.runtime.lane_submit(service, sid, task) {
                Ok(()) => session.deadline = None,
                Err(task) => {
                    session.wait = Wait::LaneSlot(task);
                    self.sched.lane_blocked.push_front(sid);
                    return;
                }
            }
        }
    }

    fn start_main(&mut self, message: lunet_core::Message) {
        let Some(main) = self.main.take() else { return };
        let args = match codec::decode(&self.lua, &message.payload) {
            Ok(args) => args,
            Err(_) => MultiValue::new(),
        };
        if message.session != 0 {
            self.main_reply = Some((message.source, message.session));
        }
        if let Some(sid) = self.new_session(&main, None) {
            self.main_session = Some(sid);
            self.sched.ready.push_back((sid, Reply::Args(args)));
        }
    }

    /// A message from another service.
    fn on_message(&mut self, service: &Arc<Service>, message: lunet_core::Message) {
        let Some(kind) = MessageKind::from_byte(message.kind) else {
            return;
        };
        match kind {
            MessageKind::Start => self.start_main(message),
            MessageKind::Continue => {}
            MessageKind::Send | MessageKind::Call => {
                let is_call = kind == MessageKind::Call;
                let answering = is_call.then_some((message.source, message.session));
                if !self.lock().dispatch {
                    match answering {
                        Some((to, session)) => {
                            services::answer(
                                &self.shared,
                                to,
                                session,
                                MessageKind::Error,
                                services::error_payload(&format!(
                                    "service :{} ({}) has no lunet.dispatch function",
                                    service.id(),
                                    self.name
                                )),
                            );
                        }
                        None => tracing::warn!(
                            service = %self.name,
                            handle = service.id(),
                            "a message from :{} was dropped: no lunet.dispatch function",
                            message.source
                        ),
                    }
                    return;
                }
                let mut args = match codec::decode(&self.lua, &message.payload) {
                    Ok(args) => args,
                    Err(e) => {
                        if let Some((to, session)) = answering {
                            services::answer(
                                &self.shared,
                                to,
                                session,
                                MessageKind::Error,
                                services::error_payload(&e.to_string()),
                            );
                        }
                        return;
                    }
                };
                args.push_front(Value::Integer(message.source as i64));
                let dispatch = self.dispatch.clone();
                if let Some(sid) = self.new_session(&dispatch, None) {
                    if let Some(call) = answering {
                        self.lock().calls.insert(sid, call);
                    }
                    self.sched.ready.push_back((sid, Reply::Args(args)));
                }
            }
            MessageKind::Response | MessageKind::Error => {
                let token = message.session;
                let Some(sid) = self.sched.sessions.id_at(token as u32) else {
                    return;
                };
                let waiting = matches!(self.sched.sessions.get(sid), Some(Session { wait: Wait::Call(t), .. }) if *t == token);
                if !waiting {
                    return;
                }
                let mut values = match codec::decode(&self.lua, &message.payload) {
                    Ok(values) => values,
                    Err(e) => {
                        let mut values = MultiValue::new();
                        values.push_back(
                            self.lua
                                .create_string(e.to_string())
                                .map_or(Value::Nil, Value::String),
                        );
                        values
                    }
                };
                values.push_front(Value::Boolean(kind == MessageKind::Response));
                let state_cell = self.shared.state.clone();
                let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
                self.sched.wake(&mut state, sid, Reply::Args(values));
            }
            MessageKind::Kill => self.lock().exiting = true,
        }
    }

    /// True when nothing can ever wake this service again: no session, no
    /// dispatch function, no listener, no connection.
    fn idle_forever(&self) -> bool {
        if !self.sched.sessions.is_empty() || !self.sched.ready.is_empty() || self.main.is_some() {
            return false;
        }
        let state = self.lock();
        !state.dispatch && state.listen_calls.is_empty() && state.conns.is_empty()
    }

    /// The service ends: callers waiting on it get errors, its sockets close.
    fn exit(&mut self, service: &Arc<Service>) {
        if self.exited {
            return;
        }
        self.exited = true;
        let state_cell = self.shared.state.clone();
        let mut state = state_cell.lock().unwrap_or_else(|e| e.into_inner());
        let mut owed: Vec<(u64, u64)> = state.calls.drain().map(|(_, call)| call).collect();
        owed.extend(state.delayed.drain().map(|(call, _)| call));
        for cid in state.conns.ids() {
            self.drop_conn(service, &mut state, cid);
        }
        drop(state);
        let message = format!(
            "service :{} ({}) exited before answering",
            service.id(),
            self.name
        );
        for (to, session) in owed {
            services::answer(
                &self.shared,
                to,
                session,
                MessageKind::Error,
                services::error_payload(&message),
            );
        }
        if let Some((to, session)) = self.main_reply.take() {
            services::answer(
                &self.shared,
                to,
                session,
                MessageKind::Error,
                services::error_payload(&message),
            );
        }
        self.sched = Sched::default();
        self.threads.clear();
    }
}

impl ServiceBody for LuaService {
    fn run(&mut self, service: &Arc<Service>, events: &mut VecDeque<Event>) -> Status {
        {
            let mut slot = self
                .shared
                .service
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(Arc::downgrade(service));
                self.interrupt.set_name(&self.name, service.id());
                service.set_interrupt(self.interrupt.clone());
            }
        }
        for event in events.drain(..) {
            match event {
                Event::Io { slot, readiness } => self.on_io(service, slot, readiness),
                Event::Accept { listener, accepted } => self.on_accept(service, listener, accepted),
                Event::LaneSlot => self.on_lane_slot(service),
                Event::Timer { id } => self.on_timer(service, id),
                Event::Message(message) => self.on_message(service, message),
                Event::LaneDone { ticket, result } => self.on_lane_done(ticket, result),
                Event::Shutdown => self.on_shutdown(),
            }
            if !self.sched.ready.is_empty() {
                self.drain_ready(service);
            }
        }
        let exiting = self.lock().exiting;
        if exiting || self.idle_forever() {
            self.exit(service);
            return Status::Exited;
        }
        Status::Alive
    }

    fn bounce(&mut self, service: &Arc<Service>, events: VecDeque<Event>) {
        self.exit(service);
        for event in events {
            match event {
                Event::Message(message)
                    if message.kind == MessageKind::Call.code()
                        || (message.kind == MessageKind::Start.code() && message.session != 0) =>
                {
                    let text = format!("service :{} ({}) has exited", service.id(), self.name);
                    services::answer(
                        &self.shared,
                        message.source,
                        message.session,
                        MessageKind::Error,
                        services::error_payload(&text),
                    );
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_and_sandbox_compile() {
        assert!(!prelude_bytecode().is_empty());
        let lua = Lua::new();
        lua.load(include_str!("sandbox.lua"))
            .into_function()
            .unwrap();
    }
}
