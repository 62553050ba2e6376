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
use std::sync::{mpsc, Arc};

use lunet_core::connection::{Connection, Fill};
use lunet_core::lane::Task;
use lunet_core::{now_ms, Event, Readiness, Runtime, Service, ServiceBody, Status};
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Thread, Value};

use crate::api::{self, connect_word};
use crate::codec;
use crate::interrupt::{killed_message, LuaInterrupt};
use crate::lane::{build_task, LaneReply, Plain};
use crate::protocol::{MessageKind, Yielded};
use crate::read::{self, ReadOutcome, ReadRequest, Taken};
use crate::services;
use crate::settings::Settings;
use crate::slab::{index_of, Slab};
use crate::state::{with_state, Caller, ConnEntry, Phase, VmState};

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
    /// A read's answer: `data` or `nil, err [, partial]`.
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
    /// Marks a waiting session ready, dropping the connection's reference
    /// to it; false if it was not waiting (already ready, or gone). The
    /// caller queues it with its reply.
    fn unlink(&mut self, state: &mut VmState, sid: u64) -> bool {
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
        true
    }

    /// Moves a waiting session to the ready queue with `reply`. A session
    /// already ready is left alone.
    fn wake(&mut self, state: &mut VmState, sid: u64, reply: Reply) {
        if self.unlink(state, sid) {
            self.ready.push_back((sid, reply));
        }
    }
}

/// The scheduler's access to the VM's state. It cannot be refused: the
/// scheduler runs between resumes, when no callback holds the state.
fn vm<R>(lua: &Lua, f: impl FnOnce(&mut VmState) -> R) -> R {
    match with_state(lua, f) {
        Ok(result) => result,
        Err(e) => panic!("{e}"),
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
    runtime: Runtime,
    settings: Arc<Settings>,
    name: String,
    /// This service's handle (0 until it first runs).
    self_id: u64,
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
    main_reply: Option<Caller>,
    exited: bool,
    /// Kept buffer for `after_slice` (swapped with `VmState::dirty`).
    dirty: Vec<u64>,
    /// Kept buffer for the answers of reads that waited (see `read.rs`).
    bytes: Vec<u8>,
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
        lua.set_app_data(VmState::new(settings.clone()));
        let setup = || -> mlua::Result<(Function, Function, Function)> {
            let core = api::build(&lua, runtime, &settings)?;
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
            lua,
            runtime: runtime.clone(),
            settings,
            name: name.to_string(),
            self_id: 0,
            sched: Sched::default(),
            threads: Vec::new(),
            run_handler,
            main: Some(main),
            main_session: None,
            startup,
            dispatch,
            interrupt: Arc::new(LuaInterrupt::new()),
            main_reply: None,
            exited: false,
            dirty: Vec::new(),
            bytes: Vec::new(),
        })
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
                self.runtime.post(
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
        vm(&self.lua, |state| state.current = sid);
        // Borrowed, not cloned: a clone of a Lua reference is a push and a pop
        // on mlua's reference stack, on every resume.
        let thread = &session.thread;
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
            if let Some(caller) = self.main_reply.take() {
                let mut payload = Vec::new();
                let _ = codec::encode([Value::Boolean(true)].iter(), &mut payload);
                self.answer(caller, MessageKind::Response, payload);
            }
        }
        self.after_slice(service);
    }

    /// Sends an answer (or an error) to a caller.
    fn answer(&self, caller: Caller, kind: MessageKind, payload: Vec<u8>) {
        services::answer(&self.runtime, self.self_id, caller, kind, payload);
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
        let registered = match yielded {
            Yielded::Read { conn: cid } => vm(&self.lua, |state| {
                let pending = state.pending_read.take();
                let shutting_down = state.shutting_down;
                let Some(entry) = state.conns.get_mut(cid) else {
                    return Err(Reply::Error("closed"));
                };
                let request = match pending {
                    Some((pending_cid, request)) if pending_cid == cid => request,
                    _ => {
                        return Err(Reply::Misuse(
                            "lunet: a read yielded without its request".into(),
                        ))
                    }
                };
                if entry.reader.is_some() || entry.phase == Phase::Closing {
                    return Err(Reply::Error("closed"));
                }
                if shutting_down && entry.count.is_some() && entry.conn.input.is_empty() {
                    return Err(Reply::Error("closed"));
                }
                entry.reader = Some(sid);
                Ok((Wait::Read(cid, request), entry.timeout_ms))
            }),
            Yielded::Write { conn: cid } | Yielded::Connect { conn: cid } => {
                let connect = matches!(yielded, Yielded::Connect { .. });
                vm(&self.lua, |state| {
                    let Some(entry) = state.conns.get_mut(cid) else {
                        return Err(Reply::Error("closed"));
                    };
                    entry.writers.push(sid);
                    let wait = if connect {
                        Wait::Connect(cid)
                    } else {
                        Wait::Write(cid)
                    };
                    Ok((wait, entry.timeout_ms))
                })
            }
            Yielded::Lane { op, args } => {
                let task = match build_task(op, &args) {
                    Ok(task) => task,
                    Err(e) => {
                        // Misuse (a table as a bind value...): the wrapper raises.
                        self.sched.ready.push_back((sid, Reply::Misuse(e)));
                        return;
                    }
                };
                let lane_timeout = self.settings.lane_timeout_ms;
                let Some(session) = self.sched.sessions.get_mut(sid) else {
                    return;
                };
                match self.runtime.lane_submit(service, sid, task) {
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
            Yielded::Call { token } => Ok((Wait::Call(token), 0)),
            Yielded::Wait { coroutine } => {
                // The coroutine that waits: the session's own, or a user
                // coroutine inside it (lunet.wakeup names that one).
                let pointer = match (coroutine, self.sched.sessions.get(sid)) {
                    (Some(co), _) => co.to_pointer() as usize,
                    (None, Some(session)) => session.thread.to_pointer() as usize,
                    (None, None) => return,
                };
                vm(&self.lua, |state| state.suspended.insert(pointer, sid));
                Ok((Wait::Suspended(pointer), 0))
            }
            Yielded::Exit => {
                vm(&self.lua, |state| state.exiting = true);
                self.finish(service, sid, None, MultiValue::new());
                return;
            }
            Yielded::Sleep { ms } => {
                if ms.is_nan() || ms <= 0.0 {
                    Err(Reply::Nothing)
                } else {
                    Ok((Wait::Sleep, ms.ceil().min(1e15) as u64))
                }
            }
        };
        let (wait, timeout_ms) = match registered {
            Ok(wait) => wait,
            Err(reply) => {
                self.sched.ready.push_back((sid, reply));
                return;
            }
        };
        let Some(session) = self.sched.sessions.get_mut(sid) else {
            return;
        };
        session.wait = wait;
        if timeout_ms > 0 {
            arm_timeout(&self.runtime, service, sid, session, timeout_ms);
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
        if let Some(caller) = vm(&self.lua, |state| state.calls.remove(&sid)) {
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
            self.answer(caller, kind, payload);
        }
        if let Some(error) = error {
            if self.main_session == Some(sid)
                && (self.startup.is_some() || self.main_reply.is_some())
            {
                if let Some(startup) = self.startup.take() {
                    let _ = startup.send(Err(error.clone()));
                }
                if let Some(caller) = self.main_reply.take() {
                    self.answer(caller, MessageKind::Error, services::error_payload(&error));
                    // A service whose start failed does not live on.
                    vm(&self.lua, |state| state.exiting = true);
                }
            } else {
                tracing::error!(service = %self.name, handle = service.id(), "session error: {error}");
            }
        }
        if let Some(cid) = session.owned_conn {
            let (sched, runtime) = (&mut self.sched, &self.runtime);
            vm(&self.lua, |state| {
                close_conn(state, sched, runtime, service, cid)
            });
        }
        if self.threads.len() < THREAD_POOL {
            self.threads.push(session.thread);
        }
    }

    /// Step 4: flush what the slice wrote, close what it closed, start what
    /// it forked.
    fn after_slice(&mut self, service: &Arc<Service>) {
        let (sched, runtime, dirty) = (&mut self.sched, &self.runtime, &mut self.dirty);
        let forks = vm(&self.lua, |state| {
            for sid in std::mem::take(&mut state.wakeups) {
                sched.wake(state, sid, Reply::Nothing);
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
                        Phase::Open => {
                            let _ = entry.conn.flush();
                        }
                        Phase::Closing => closing.push(cid),
                        Phase::Connecting => {}
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
            if state.forks.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut state.forks)
            }
        });
        for fork in forks {
            if let Some(sid) = self.new_session(&fork.function, None) {
                self.sched.ready.push_back((sid, Reply::Args(fork.args)));
            }
        }
    }

    fn on_accept(&mut self, service: &Arc<Service>, listener: u32, accepted: lunet_core::Accepted) {
        let lunet_core::Accepted {
            stream,
            peer,
            count,
        } = accepted;
        let runtime = &self.runtime;
        let registered = vm(&self.lua, |state| {
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
            match runtime.registry().register(
                &mut entry.conn.stream,
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            ) {
                Ok(()) => Ok(cid),
                Err(e) => {
                    state.conns.remove(cid);
                    Err(e)
                }
            }
        });
        let cid = match registered {
            Ok(cid) => cid,
            Err(e) => {
                tracing::error!(service = %self.name, "cannot register connection from {peer}: {e}");
                return;
            }
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
            None => {
                let (sched, runtime) = (&mut self.sched, &self.runtime);
                vm(&self.lua, |state| {
                    close_conn(state, sched, runtime, service, cid)
                });
            }
        }
    }

    fn on_io(&mut self, service: &Arc<Service>, slot: u32, readiness: Readiness) {
        let (sched, runtime, bytes) = (&mut self.sched, &self.runtime, &mut self.bytes);
        let read = vm(&self.lua, |state| -> Option<(u64, Taken)> {
            let cid = state.conns.id_at(slot)?;
            let high_water = state.settings.high_water;
            let entry = state.conns.get_mut(cid)?;
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
                Phase::Closing => {
                    advance_close(state, runtime, service, cid);
                    None
                }
                Phase::Connecting => {
                    if !readiness.is_writable() {
                        return None;
                    }
                    let result = match entry.conn.stream.take_error() {
                        Ok(Some(e)) | Err(e) => Err(e),
                        Ok(None) => match entry.conn.stream.peer_addr() {
                            Ok(_) => Ok(()),
                            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return None,
                            Err(e) => Err(e),
                        },
                    };
                    let writers = std::mem::take(&mut entry.writers);
                    let failure = match result {
                        Ok(()) => {
                            entry.phase = Phase::Open;
                            None
                        }
                        Err(e) => {
                            entry.conn.failed = true;
                            Some(connect_word(&e).unwrap_or("connect failed"))
                        }
                    };
                    for sid in writers {
                        let reply = failure.map_or(Reply::True, Reply::Error);
                        sched.wake(state, sid, reply);
                    }
                    None
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
                            sched.wake(state, sid, reply);
                        }
                    }
                    let entry = state.conns.get_mut(cid)?;
                    let sid = entry.reader?;
                    let Some(Session {
                        wait: Wait::Read(_, request),
                        ..
                    }) = sched.sessions.get(sid)
                    else {
                        entry.reader = None;
                        return None;
                    };
                    let outcome = read::try_read(entry, request);
                    if matches!(outcome, ReadOutcome::Wait) {
                        return None;
                    }
                    let taken = read::take(entry, outcome, bytes);
                    sched.unlink(state, sid);
                    Some((sid, taken))
                }
            }
        });
        if let Some((sid, taken)) = read {
            self.ready_with_read(sid, taken);
        }
    }

    /// Queues a session whose read finished, its answer in `self.bytes`.
    fn ready_with_read(&mut self, sid: u64, taken: Taken) {
        let reply = match read::answer(&self.lua, taken, &self.bytes) {
            Ok((data, err, partial)) => Reply::Read(data, err, partial),
            Err(_) => Reply::Error("no memory"),
        };
        self.sched.ready.push_back((sid, reply));
        if self.bytes.capacity() > read::KEEP_BYTES {
            self.bytes = Vec::new();
        }
    }

    fn on_timer(&mut self, service: &Arc<Service>, id: u64) {
        let now = now_ms();
        if id & 1 == 1 {
            let cid = id >> 1;
            vm(&self.lua, |state| {
                let expired = state.conns.get(cid).is_some_and(|e| {
                    e.phase == Phase::Closing && e.linger_deadline.is_some_and(|d| d <= now)
                });
                if expired {
                    drop_conn(state, cid);
                }
            });
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
            self.runtime.add_timer(service, deadline, sid << 1);
            return;
        }
        let (sched, bytes) = (&mut self.sched, &mut self.bytes);
        let timed_out_read = vm(&self.lua, |state| {
            let reply = match &sched.sessions.get(sid)?.wait {
                Wait::Sleep => Reply::Nothing,
                Wait::Ready | Wait::Lane => return None,
                // As OpenResty: a read that times out hands back what arrived.
                Wait::Read(cid, request) if request.returns_partial() => {
                    match state.conns.get_mut(*cid) {
                        Some(entry) => {
                            read::take_all(entry, bytes);
                            sched.unlink(state, sid);
                            return Some(Taken::Failed {
                                err: "timeout",
                                partial: true,
                            });
                        }
                        None => Reply::Error("timeout"),
                    }
                }
                _ => Reply::Error("timeout"),
            };
            sched.wake(state, sid, reply);
            None
        });
        if let Some(taken) = timed_out_read {
            self.ready_with_read(sid, taken);
        }
    }

    fn on_shutdown(&mut self) {
        let sched = &mut self.sched;
        vm(&self.lua, |state| {
            state.shutting_down = true;
            for cid in state.conns.ids() {
                let Some(entry) = state.conns.get(cid) else {
                    continue;
                };
                if entry.count.is_some() && entry.conn.input.is_empty() {
                    if let Some(sid) = entry.reader {
                        sched.wake(state, sid, Reply::Error("closed"));
                    }
                }
            }
        });
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
        let sched = &mut self.sched;
        vm(&self.lua, |state| sched.wake(state, sid, reply));
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
            match self.runtime.lane_submit(service, sid, task) {
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
                let answering =
                    (kind == MessageKind::Call).then_some((message.source, message.session));
                if !vm(&self.lua, |state| state.dispatch) {
                    match answering {
                        Some(caller) => {
                            let text = format!(
                                "service :{} ({}) has no lunet.dispatch function",
                                service.id(),
                                self.name
                            );
                            self.answer(caller, MessageKind::Error, services::error_payload(&text));
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
                        if let Some(caller) = answering {
                            self.answer(
                                caller,
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
                    if let Some(caller) = answering {
                        vm(&self.lua, |state| state.calls.insert(sid, caller));
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
                let sched = &mut self.sched;
                vm(&self.lua, |state| {
                    sched.wake(state, sid, Reply::Args(values))
                });
            }
            MessageKind::Kill => vm(&self.lua, |state| state.exiting = true),
        }
    }

    /// True when the service exits now: it was told to, or nothing can ever
    /// wake it again (no session, no dispatch function, no listener, no
    /// connection).
    fn done(&self) -> bool {
        let quiet =
            self.sched.sessions.is_empty() && self.sched.ready.is_empty() && self.main.is_none();
        vm(&self.lua, |state| {
            state.exiting
                || (quiet
                    && !state.dispatch
                    && state.listen_calls.is_empty()
                    && state.conns.is_empty())
        })
    }

    /// The service ends: callers waiting on it get errors, its sockets close.
    fn exit(&mut self, service: &Arc<Service>) {
        if self.exited {
            return;
        }
        self.exited = true;
        let mut owed: Vec<Caller> = vm(&self.lua, |state| {
            let mut owed: Vec<Caller> = state.calls.drain().map(|(_, call)| call).collect();
            owed.extend(state.delayed.drain());
            for cid in state.conns.ids() {
                drop_conn(state, cid);
            }
            owed
        });
        owed.extend(self.main_reply.take());
        let message = format!(
            "service :{} ({}) exited before answering",
            service.id(),
            self.name
        );
        for caller in owed {
            self.answer(
                caller,
                MessageKind::Error,
                services::error_payload(&message),
            );
        }
        self.sched = Sched::default();
        self.threads.clear();
    }
}

/// Closes a connection: wakes whoever waits on it, then flushes and drains
/// it (see `advance_close`).
fn close_conn(
    state: &mut VmState,
    sched: &mut Sched,
    runtime: &Runtime,
    service: &Arc<Service>,
    cid: u64,
) {
    let Some(entry) = state.conns.get_mut(cid) else {
        return;
    };
    entry.phase = Phase::Closing;
    let mut waiters = std::mem::take(&mut entry.writers);
    waiters.extend(entry.reader.take());
    for sid in waiters {
        sched.wake(state, sid, Reply::Error("closed"));
    }
    advance_close(state, runtime, service, cid);
}

/// A closing connection: flush what is left; if the peer sent data we
/// never read, half-close and discard input until it closes too (a plain
/// close with unread input sends RST, which can destroy our last answer
/// before the peer reads it); drop it at the linger deadline regardless.
fn advance_close(state: &mut VmState, runtime: &Runtime, service: &Arc<Service>, cid: u64) {
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
        drop_conn(state, cid);
        return;
    }
    if entry.linger_deadline.is_none() {
        let deadline = now_ms() + linger_ms;
        entry.linger_deadline = Some(deadline);
        runtime.add_timer(service, deadline, (cid << 1) | 1);
    }
}

fn drop_conn(state: &mut VmState, cid: u64) {
    // Dropping the entry closes the socket and counts it down.
    state.conns.remove(cid);
}

impl ServiceBody for LuaService {
    fn run(&mut self, service: &Arc<Service>, events: &mut VecDeque<Event>) -> Status {
        if self.self_id == 0 {
            self.self_id = service.id();
            vm(&self.lua, |state| {
                state.service = Arc::downgrade(service);
                state.self_id = service.id();
            });
            self.interrupt.set_name(&self.name, service.id());
            service.set_interrupt(self.interrupt.clone());
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
        if self.done() {
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
                    self.answer(
                        (message.source, message.session),
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
