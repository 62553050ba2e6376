//! The admin listener (`lunet serve --admin ADDR`): a system service, in
//! Rust with no Lua VM, that serves on one port skynet's debug console as
//! a line protocol (`console.rs`) and HTTP `GET /metrics` (`metrics.rs`)
//! and `GET /health`.
//!
//! Protocol:
//! 1. [`start`] refuses an address that is not loopback unless told
//!    otherwise (`public`, logged as a warning), spawns the service and
//!    binds its listener under a key of its own, so it never shares a
//!    socket with a script's `lunet.listen` of the same address.
//! 2. A connection's first line decides what it is. A request line
//!    (`GET /metrics HTTP/1.1`) makes it HTTP: the head is read (bounded by
//!    `MAX_INPUT`), answered with `Connection: close`, and the connection
//!    closes. Anything else is the console: each line is a command,
//!    answered with lines ending in `<CMD OK>` or `<CMD Error>`, until the
//!    client closes. Bytes after the last newline at the client's end of
//!    file are dropped: a command ends with a newline.
//! 3. `gc`, `reload` and `reload MODULE` wait for others. `gc` posts
//!    `Collect` to every other service and gathers the `Collected`
//!    answers, at most `WAIT_MS` (a service in a long slice is reported as
//!    not answering). `reload` hands a [`ReloadReply`] to the server's
//!    [`ReloadHook`], which posts the outcome back here as a message.
//!    `reload MODULE` compiles the module's file again (a file that does
//!    not compile changes nothing), then posts `ReloadModule` to every
//!    runtime that runs it and gathers their answers as `gc` does: each
//!    loads the new code, or keeps the old if it fails to load.
//!    Meanwhile the connection's later lines wait in its buffer; a client
//!    that leaves meanwhile is simply not answered.
//! 4. The admin is not a host: a reload leaves it alone, and it gets no
//!    shutdown, so `/health` answers 503 while the server drains.
//!
//! The numbers come from `Runtime::stats` (lunet_core::stats): reading
//! them locks each mailbox once, on this service's turn, never on the
//! workers' hot path.

mod console;
mod metrics;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use lunet_core::connection::{Connection, Fill};
use lunet_core::proto::http::{self, Limits, Method, Version};
use lunet_core::proto::Progress;
use lunet_core::{now_ms, Accepted, ConnectionCount, Event, Message, Runtime, Service, Status};
use lunet_core::{ListenError, ServiceBody};

use crate::ids::ConnectionId;
use crate::model::modules;
use crate::protocol::{parse_collected, MessageKind};
use crate::slab::Slab;
use console::{Collected, Command, Reloaded};

/// How long `gc` and `reload MODULE` wait for the services' answers.
const WAIT_MS: u64 = 2000;
/// Bytes a connection may have buffered: a console line, or an HTTP head.
const MAX_INPUT: usize = 16 * 1024;
/// Longest console line.
const MAX_LINE: usize = 4096;
/// The listener key (see step 1): no script's `lunet.listen` key has no
/// `#` in it. `lunet serve --processes` leaves it out of the ports its
/// processes share: each has a console of its own.
pub const LISTENER_KEY: &str = "lunet-admin";

/// Where the server is in its life, as `/health` and `/metrics` tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthState {
    /// Hosts are running their main chunks.
    Starting = 0,
    Serving = 1,
    /// Stopping: listeners closed, sessions finishing.
    Draining = 2,
}

/// The server's state, set by whoever runs the server, read here.
#[derive(Debug)]
pub struct Health(AtomicU8);

impl Health {
    pub fn new(state: HealthState) -> Health {
        Health(AtomicU8::new(state as u8))
    }

    pub fn set(&self, state: HealthState) {
        self.0.store(state as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> HealthState {
        match self.0.load(Ordering::Relaxed) {
            0 => HealthState::Starting,
            1 => HealthState::Serving,
            _ => HealthState::Draining,
        }
    }
}

/// How the console's `reload` reaches the server: called on the admin's
/// worker, it must not block (it queues the request and returns).
pub type ReloadHook = Arc<dyn Fn(ReloadReply) + Send + Sync>;

/// The outcome of a reload: `Ok(what happened)` or `Err(why not)`.
pub type ReloadOutcome = Result<String, String>;

/// Where the outcome of a reload goes. Dropped unsent, it answers that the
/// server stopped.
pub struct ReloadReply(Option<Box<dyn FnOnce(ReloadOutcome) + Send>>);

impl ReloadReply {
    /// A reply that runs `send` with the outcome.
    pub fn new(send: impl FnOnce(ReloadOutcome) + Send + 'static) -> ReloadReply {
        ReloadReply(Some(Box::new(send)))
    }

    pub fn send(mut self, outcome: ReloadOutcome) {
        if let Some(send) = self.0.take() {
            send(outcome);
        }
    }
}

impl Drop for ReloadReply {
    fn drop(&mut self) {
        if let Some(send) = self.0.take() {
            send(Err("the server stopped before the reload finished".into()));
        }
    }
}

/// What the admin listener is given.
pub struct AdminConfig {
    /// `IP:PORT` to listen on.
    pub addr: String,
    /// Allow an address that is not loopback.
    pub public: bool,
    pub health: Arc<Health>,
    /// `None` where there is nothing to reload (`lunet run`).
    pub reload: Option<ReloadHook>,
}

/// Why the admin listener did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("--admin {0}: {1}")]
    Address(String, #[source] std::io::Error),
    #[error(
        "--admin {0} is not a loopback address: anyone who reaches it may kill services; \
         add --admin-public to serve it there anyway"
    )]
    NotLoopback(String),
    #[error("--admin: {0}")]
    Listen(#[from] ListenError),
}

/// A running admin listener.
pub struct Admin {
    service: Arc<Service>,
    addr: SocketAddr,
}

impl Admin {
    /// The address it listens on (the port chosen if 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its service (its connections are not the script's: see `load`).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }
}

/// Step 1: starts the admin service and its listener.
pub fn start(runtime: &Runtime, config: AdminConfig) -> Result<Admin, AdminError> {
    let addr = lunet_core::net::parse_addr(&config.addr)
        .map_err(|e| AdminError::Address(config.addr.clone(), e))?;
    if !addr.ip().is_loopback() {
        if !config.public {
            return Err(AdminError::NotLoopback(config.addr));
        }
        tracing::warn!(
            "the admin console listens on {addr}, which is not loopback (--admin-public): \
             whoever reaches it can kill services and reload the server"
        );
    }
    let body = AdminService {
        runtime: runtime.clone(),
        health: config.health,
        reload: config.reload,
        conns: Slab::default(),
        jobs: HashMap::new(),
        next_job: 1,
    };
    let service = runtime.spawn_service("admin", Box::new(body));
    // Uncapped: the console answers also when the server is full.
    match runtime.listen_uncapped(&addr.to_string(), LISTENER_KEY, &service) {
        Ok((_, bound)) => {
            tracing::info!("admin console listening on {bound}");
            Ok(Admin {
                service,
                addr: bound,
            })
        }
        Err(e) => {
            runtime.kill(&service, Message::signal(MessageKind::Kill.code()));
            Err(e.into())
        }
    }
}

/// What a connection turned out to be (step 2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No line yet.
    New,
    Console,
    Http,
}

struct AdminConn {
    conn: Connection,
    /// Its share of the runtime's connection count.
    _count: ConnectionCount,
    mode: Mode,
    /// A command that waits for others (step 3).
    job: Option<u64>,
    /// Answered for good: close once the output is written.
    closing: bool,
}

/// A command that waits for others (step 3).
enum Work {
    /// Services not yet answered (id, name), and the answers so far.
    Gc {
        waiting: HashMap<u64, String>,
        done: Vec<(u64, String, Collected)>,
    },
    Reload,
    /// `reload MODULE`: runtimes not yet answered, and the answers so far.
    Module {
        module: String,
        waiting: HashMap<u64, String>,
        done: Vec<(u64, String, Reloaded)>,
    },
}

struct Job {
    conn: ConnectionId,
    work: Work,
}

struct AdminService {
    runtime: Runtime,
    health: Arc<Health>,
    reload: Option<ReloadHook>,
    conns: Slab<ConnectionId, AdminConn>,
    jobs: HashMap<u64, Job>,
    next_job: u64,
}

impl ServiceBody for AdminService {
    fn run(&mut self, service: &Arc<Service>, events: &mut VecDeque<Event>) -> Status {
        while let Some(event) = events.pop_front() {
            match event {
                Event::Accept { accepted, .. } => self.on_accept(service, accepted),
                Event::Io { slot, readiness } => {
                    let Some(cid) = self.conns.id_at(slot) else {
                        continue;
                    };
                    if let Some(entry) = self.conns.get_mut(cid) {
                        entry.conn.readable |= readiness.is_readable();
                        entry.conn.writable |= readiness.is_writable();
                        entry.conn.hangup |= readiness.is_hangup();
                    }
                    self.advance(service, cid);
                }
                Event::Message(message) => {
                    if message.kind == MessageKind::Kill.code() {
                        return Status::Exited;
                    }
                    self.on_message(service, message);
                }
                Event::Timer { id } => self.on_deadline(service, id),
                // Step 4: the admin serves while the server drains.
                Event::Shutdown | Event::LaneDone { .. } | Event::LaneSlot => {}
            }
        }
        Status::Alive
    }
}

impl AdminService {
    fn on_accept(&mut self, service: &Arc<Service>, accepted: Accepted) {
        let Accepted {
            stream,
            peer,
            count,
        } = accepted;
        let cid = self.conns.insert(AdminConn {
            conn: Connection::new(stream),
            _count: count,
            mode: Mode::New,
            job: None,
            closing: false,
        });
        let token = lunet_core::reactor::token(service.index(), cid.index());
        let Some(entry) = self.conns.get_mut(cid) else {
            return;
        };
        if let Err(e) = self.runtime.registry().register(
            &mut entry.conn.stream,
            token,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
        ) {
            tracing::error!("admin: cannot register the connection from {peer}: {e}");
            self.conns.remove(cid);
            return;
        }
        self.advance(service, cid);
    }

    /// Reads what the socket has, answers every whole command that can be
    /// answered now, writes, and closes the connection when it is done.
    fn advance(&mut self, service: &Arc<Service>, cid: ConnectionId) {
        loop {
            let Some(entry) = self.conns.get_mut(cid) else {
                return;
            };
            while entry.conn.readable && entry.conn.input.len() < MAX_INPUT {
                match entry.conn.fill(MAX_INPUT - entry.conn.input.len()) {
                    Fill::Data(_) => {}
                    Fill::WouldBlock | Fill::Closed | Fill::Reset => break,
                }
            }
            let answered = self.answer_lines(service, cid);
            let Some(entry) = self.conns.get_mut(cid) else {
                return;
            };
            let _ = entry.conn.flush();
            let waiting = entry.job.is_some();
            let finished = entry.conn.failed
                || (entry.closing && entry.conn.output.is_empty())
                || (entry.conn.eof && !waiting && entry.conn.output.is_empty());
            if finished {
                self.conns.remove(cid);
                return;
            }
            // Answering made room in the buffer: read on.
            if !(answered && entry.conn.readable) {
                return;
            }
        }
    }

    /// Answers the whole lines in the buffer while no command waits (step
    /// 2). True if it consumed anything.
    fn answer_lines(&mut self, service: &Arc<Service>, cid: ConnectionId) -> bool {
        let mut consumed = false;
        loop {
            let Some(entry) = self.conns.get_mut(cid) else {
                return consumed;
            };
            if entry.job.is_some() || entry.closing {
                return consumed;
            }
            let input = entry.conn.input.as_slice();
            let Some(end) = memchr::memchr(b'\n', input) else {
                if input.len() >= MAX_LINE && entry.mode != Mode::Http {
                    let text = format!("a line is longer than {MAX_LINE} bytes");
                    entry
                        .conn
                        .output
                        .extend(console::answer(&text, false).as_bytes());
                    entry.closing = true;
                }
                return consumed;
            };
            if entry.mode == Mode::New {
                entry.mode = if is_request_line(&input[..end]) {
                    Mode::Http
                } else {
                    Mode::Console
                };
            }
            if entry.mode == Mode::Http {
                let health = self.health.get();
                let runtime = &self.runtime;
                entry.closing = answer_http(&mut entry.conn, runtime, health);
                return consumed;
            }
            let line = String::from_utf8_lossy(&input[..end])
                .trim_end_matches('\r')
                .to_string();
            entry.conn.input.consume(end + 1);
            consumed = true;
            self.command(service, cid, &line);
        }
    }

    /// Runs one console command: answers it now, or starts its job.
    fn command(&mut self, service: &Arc<Service>, cid: ConnectionId, line: &str) {
        let reply: Result<String, String> = match console::parse(line) {
            Ok(None) => return,
            Err(message) => Err(message),
            Ok(Some(command)) => match command {
                Command::Help => Ok(console::HELP.to_string()),
                Command::List => Ok(console::list(&self.runtime.stats(), &modules::running_text)),
                Command::Stat => Ok(console::stat(&self.runtime.stats())),
                Command::Mem => Ok(console::mem(&self.runtime.stats())),
                Command::Info(id) => self
                    .runtime
                    .stats()
                    .services
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| console::info(s, &modules::running_text(s.id)))
                    .ok_or_else(|| format!("info: no service :{id}")),
                Command::Kill(id) => self.kill(service, id),
                Command::Gc => return self.start_gc(service, cid),
                Command::Reload(None) => match self.reload.clone() {
                    Some(hook) => return self.start_reload(service, cid, &hook),
                    None => Err("reload: only `lunet serve` reloads".to_string()),
                },
                Command::Reload(Some(module)) => {
                    return self.start_module_reload(service, cid, module)
                }
            },
        };
        self.reply(cid, reply);
    }

    fn reply(&mut self, cid: ConnectionId, reply: Result<String, String>) {
        if let Some(entry) = self.conns.get_mut(cid) {
            let (text, ok) = match &reply {
                Ok(text) => (text.as_str(), true),
                Err(text) => (text.as_str(), false),
            };
            entry
                .conn
                .output
                .extend(console::answer(text, ok).as_bytes());
        }
    }

    fn kill(&self, service: &Arc<Service>, id: u64) -> Result<String, String> {
        if id == service.id() {
            return Err(format!("kill: :{id} is this console"));
        }
        let target = self
            .runtime
            .service(id)
            .ok_or_else(|| format!("kill: no service :{id}"))?;
        if self
            .runtime
            .kill(&target, Message::signal(MessageKind::Kill.code()))
        {
            tracing::info!("admin: killed service :{id} ({})", target.name());
            Ok(format!("killed :{id}"))
        } else {
            Err(format!("kill: service :{id} has already exited"))
        }
    }

    /// A new job's id: answers come back carrying it.
    fn job_id(&mut self) -> u64 {
        let job = self.next_job;
        self.next_job += 1;
        job
    }

    /// The connection waits for `job`.
    fn add_job(&mut self, cid: ConnectionId, job: u64, work: Work) {
        self.jobs.insert(job, Job { conn: cid, work });
        if let Some(entry) = self.conns.get_mut(cid) {
            entry.job = Some(job);
        }
    }

    /// Step 3, `gc`.
    fn start_gc(&mut self, service: &Arc<Service>, cid: ConnectionId) {
        let job = self.job_id();
        let mut waiting = HashMap::new();
        for target in self.runtime.services() {
            if target.id() == service.id() {
                continue;
            }
            let collect = Message::new(service.id(), job, MessageKind::Collect.code(), Vec::new());
            if self.runtime.post(&target, Event::Message(collect)) {
                waiting.insert(target.id(), target.name().to_string());
            }
        }
        let done = Vec::new();
        self.add_job(cid, job, Work::Gc { waiting, done });
        self.runtime.add_timer(service, now_ms() + WAIT_MS, job);
        self.finish_if_done(service, job);
    }

    /// Step 3, `reload MODULE`.
    fn start_module_reload(&mut self, service: &Arc<Service>, cid: ConnectionId, module: &str) {
        if let Err(e) = modules::recompile(module) {
            let text = format!("reload {module}: {e}; nothing changed");
            self.reply(cid, Err(text));
            return;
        }
        let job = self.job_id();
        let mut waiting = HashMap::new();
        for id in modules::users(module) {
            let Some(target) = self.runtime.service(id) else {
                continue;
            };
            let message = Message::new(
                service.id(),
                job,
                MessageKind::ReloadModule.code(),
                module.as_bytes().to_vec(),
            );
            if self.runtime.post_message(&target, message).is_ok() {
                waiting.insert(id, target.name().to_string());
            }
        }
        let work = Work::Module {
            module: module.to_string(),
            waiting,
            done: Vec::new(),
        };
        self.add_job(cid, job, work);
        self.runtime.add_timer(service, now_ms() + WAIT_MS, job);
        self.finish_if_done(service, job);
    }

    /// Step 3, `reload`.
    fn start_reload(&mut self, service: &Arc<Service>, cid: ConnectionId, hook: &ReloadHook) {
        let job = self.job_id();
        self.add_job(cid, job, Work::Reload);
        let (runtime, admin) = (self.runtime.clone(), service.clone());
        hook(ReloadReply::new(move |outcome| {
            let (kind, text) = match outcome {
                Ok(text) => (MessageKind::Response, text),
                Err(text) => (MessageKind::Error, text),
            };
            let message = Message::new(0, job, kind.code(), text.into_bytes());
            runtime.post(&admin, Event::Message(message));
        }));
    }

    fn on_message(&mut self, service: &Arc<Service>, message: Message) {
        let job = message.session;
        match MessageKind::from_byte(message.kind) {
            Some(MessageKind::Collected) => {
                if let Some(Job {
                    work: Work::Gc { waiting, done },
                    ..
                }) = self.jobs.get_mut(&job)
                {
                    if let (Some(name), Some((before, after))) = (
                        waiting.remove(&message.source),
                        parse_collected(&message.payload),
                    ) {
                        done.push((message.source, name, Collected::Done(before, after)));
                    }
                }
                self.finish_if_done(service, job);
            }
            Some(kind @ (MessageKind::Response | MessageKind::Error))
                if matches!(
                    self.jobs.get(&job),
                    Some(Job {
                        work: Work::Module { .. },
                        ..
                    })
                ) =>
            {
                if let Some(Job {
                    work: Work::Module { waiting, done, .. },
                    ..
                }) = self.jobs.get_mut(&job)
                {
                    if let Some(name) = waiting.remove(&message.source) {
                        let text = crate::codec::decode_text(&message.payload).unwrap_or_default();
                        let outcome = if kind == MessageKind::Response {
                            Reloaded::Done(text)
                        } else {
                            Reloaded::Failed(text)
                        };
                        done.push((message.source, name, outcome));
                    }
                }
                self.finish_if_done(service, job);
            }
            Some(kind @ (MessageKind::Response | MessageKind::Error)) => {
                if let Some(Job {
                    conn,
                    work: Work::Reload,
                }) = self.jobs.remove(&job)
                {
                    let text = String::from_utf8_lossy(&message.payload).into_owned();
                    let outcome = if kind == MessageKind::Response {
                        Ok(text)
                    } else {
                        Err(text)
                    };
                    self.finish_job(service, conn, outcome);
                }
            }
            // A service that calls the console (its handle is in `list`)
            // gets an error, not a wait without end.
            Some(kind) if kind.expects_answer() => {
                tracing::warn!(
                    "admin: refused a {kind:?} from :{}: the console takes no calls",
                    message.source
                );
                crate::mail::answer(
                    &self.runtime,
                    service.id(),
                    crate::state::Caller::of(&message),
                    MessageKind::Error,
                    crate::mail::error_payload("the admin console takes no calls"),
                );
            }
            _ => {}
        }
    }

    fn on_deadline(&mut self, service: &Arc<Service>, job: u64) {
        match self.jobs.get_mut(&job).map(|job| &mut job.work) {
            Some(Work::Gc { waiting, done }) => {
                for (id, name) in waiting.drain() {
                    done.push((id, name, Collected::NoAnswer));
                }
            }
            Some(Work::Module { waiting, done, .. }) => {
                for (id, name) in waiting.drain() {
                    done.push((id, name, Reloaded::NoAnswer));
                }
            }
            _ => {}
        }
        self.finish_if_done(service, job);
    }

    /// Answers a `gc` or `reload MODULE` once nobody is left to answer.
    fn finish_if_done(&mut self, service: &Arc<Service>, job: u64) {
        let complete = matches!(
            self.jobs.get(&job).map(|job| &job.work),
            Some(Work::Gc { waiting, .. } | Work::Module { waiting, .. }) if waiting.is_empty()
        );
        if !complete {
            return;
        }
        let Some(Job { conn, work }) = self.jobs.remove(&job) else {
            return;
        };
        let reply = match work {
            Work::Gc { mut done, .. } => {
                done.sort_by_key(|(id, _, _)| *id);
                Ok(console::gc(&done))
            }
            Work::Module {
                module, mut done, ..
            } => {
                done.sort_by_key(|(id, _, _)| *id);
                console::module_reload(&module, &done)
            }
            Work::Reload => return,
        };
        self.finish_job(service, conn, reply);
    }

    /// A job's answer: to its connection if it is still there, then the
    /// lines that waited behind it.
    fn finish_job(
        &mut self,
        service: &Arc<Service>,
        cid: ConnectionId,
        reply: Result<String, String>,
    ) {
        let Some(entry) = self.conns.get_mut(cid) else {
            return; // the client left (step 3)
        };
        entry.job = None;
        self.reply(cid, reply);
        self.advance(service, cid);
    }
}

/// A request line: `METHOD TARGET HTTP/1.x`.
fn is_request_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(_), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    !method.is_empty() && method.iter().all(u8::is_ascii_uppercase) && version.starts_with(b"HTTP/")
}

/// Answers the HTTP request at the front of the buffer if its head is
/// whole; true once answered (the connection then closes).
fn answer_http(conn: &mut Connection, runtime: &Runtime, health: HealthState) -> bool {
    let limits = Limits {
        max_head: MAX_INPUT / 2,
        ..Limits::default()
    };
    let mut out = Vec::new();
    match http::parse_request(conn.input.as_slice(), &limits) {
        Ok(Progress::NeedMore { .. }) => {
            if conn.input.len() < MAX_INPUT {
                return false;
            }
            http::response::write_error_response(
                &mut out,
                &http::Error::HeadersTooLarge("request head too large"),
            );
        }
        Err(error) => http::response::write_error_response(&mut out, &error),
        Ok(Progress::Done(request, _)) => {
            let head = request.kind == Method::Head;
            let (status, content_type, body, allow) = match (request.kind, request.path) {
                (Method::Get | Method::Head, "/metrics") => (
                    200,
                    metrics::CONTENT_TYPE,
                    metrics::render(&runtime.stats(), health == HealthState::Serving),
                    false,
                ),
                (Method::Get | Method::Head, "/health") => match health {
                    HealthState::Serving => (200, TEXT, "ok\n".to_string(), false),
                    HealthState::Starting => (503, TEXT, "starting\n".to_string(), false),
                    HealthState::Draining => (503, TEXT, "draining\n".to_string(), false),
                },
                (Method::Get | Method::Head, _) => {
                    (404, TEXT, "try /metrics or /health\n".to_string(), false)
                }
                _ => (405, TEXT, "only GET and HEAD\n".to_string(), true),
            };
            // The status codes above are valid.
            let _ = http::response::write_status_line(&mut out, Version::Http11, status);
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(content_type.as_bytes());
            out.extend_from_slice(b"\r\nConnection: close\r\n");
            if allow {
                out.extend_from_slice(b"Allow: GET, HEAD\r\n");
            }
            http::response::write_content_length(&mut out, body.len() as u64);
            http::response::end_head(&mut out);
            if !head {
                out.extend_from_slice(body.as_bytes());
            }
        }
    }
    conn.output.extend(&out);
    true
}

const TEXT: &str = "text/plain; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_told_from_commands() {
        assert!(is_request_line(b"GET /metrics HTTP/1.1\r"));
        assert!(is_request_line(b"POST /x HTTP/1.0"));
        assert!(!is_request_line(b"list"));
        assert!(!is_request_line(b"kill :3"));
        assert!(!is_request_line(b"get /metrics HTTP/1.1"));
        assert!(!is_request_line(b"GET /metrics"));
    }

    #[test]
    fn a_reply_dropped_unsent_says_the_server_stopped() {
        let (sender, receiver) = std::sync::mpsc::channel();
        drop(ReloadReply::new(move |outcome| {
            let _ = sender.send(outcome);
        }));
        let outcome = receiver.try_recv().unwrap();
        assert!(outcome.unwrap_err().contains("stopped"));
    }
}
