//! The reactor: the `mio::Poll`, the listening sockets and the timer
//! wheel. It never runs Lua and never reads payload. It has no thread of
//! its own: it is the pool's [`Driver`], which idle workers run in turn
//! (`scheduler/mod.rs`, step 6).
//!
//! Protocol:
//! 1. Other threads reach it through its [`Handle`]: they queue a
//!    [`Command`] and wake it through the `mio::Waker` only when a worker
//!    is (about to be) blocked in its `poll` (`sleeping`), so a busy
//!    reactor costs them no syscall. Before it blocks the worker sets
//!    `sleeping`, then looks at the queue once more; a sender pushes under
//!    the queue's lock, then reads `sleeping`. The lock orders the two
//!    looks: either the sender sees the reactor sleeping and wakes it, or
//!    the reactor sees the command. The same waker wakes the worker asleep
//!    in the poll when work is queued for it (`Handle::wake`).
//! 2. A turn: apply queued commands, poll (without blocking, or blocking
//!    until the next timer's deadline), apply commands again; then
//!    dispatch: turn each readiness into an `Event::Io` on the owning
//!    service (the token says which: service index in the high 32 bits,
//!    connection slot in the low 32), accept on ready listeners and hand
//!    each connection to the least-loaded host, then fire expired timers.
//!    Every event goes through the pool's one scheduling path
//!    (`Pool::post`), from the worker that polled.
//! 3. Polling without blocking while idle, yielding the CPU between polls,
//!    is the workers' search (`scheduler/worker.rs`): on two cores a futex
//!    wakeup costs more than a request (`shared/research/scheduling.md`).
//! 4. Each accepted connection carries a [`ConnectionCount`], counted down
//!    wherever the connection ends, so `max_conns` is checked against a
//!    count that cannot leak.
//! 5. Replacing the hosts of the listeners (`lunet serve` starting, or
//!    reloading): `HoldJoins` makes hosts that join from then on wait
//!    beside the listener's hosts, getting no connection, while their main
//!    chunks run; `SwitchHosts` then, in one command, takes the old hosts
//!    off every listener, admits the waiting ones and closes the listeners
//!    no new host joined. The sockets the new hosts share stay open
//!    throughout, so no connection is refused; connections accepted before
//!    the switch were posted to old hosts, those after go to new ones.
//!    A listener whose hosts changed accepts at the next dispatch (`due`):
//!    connections may wait in its backlog whose readiness came before.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::clock::now_ms;
use crate::event::{Accepted, ConnectionCount, Event, Readiness};
use crate::scheduler::{Driver, Pool};
use crate::service::Service;
use crate::stats::{bump, Accepts};
use crate::timer_wheel::TimerWheel;

/// Token of the waker.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// Readiness events taken per poll. More stay in epoll's ready list for the
/// next poll (nothing is lost); 1024 keeps one poll's work bounded.
const EVENTS_PER_POLL: usize = 1024;
/// Service index reserved for listener tokens.
const LISTENER_SERVICE: u32 = u32::MAX;
/// How long to wait before retrying accept after EMFILE/ENFILE: soon enough
/// that a descriptor freed meanwhile is used within a blink, seldom enough
/// that a process out of descriptors does not spin on a failing accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Closes a listening socket (dropping it); connections still in its
/// backlog are reset by the kernel.
fn close_listener(poll: &Poll, mut listener: Listener) {
    let _ = poll.registry().deregister(&mut listener.socket);
}

/// Builds a socket token from a service index and a connection slot.
pub fn token(service_index: u32, slot: u32) -> Token {
    Token(((service_index as usize) << 32) | slot as usize)
}

fn split_token(token: Token) -> (u32, u32) {
    ((token.0 >> 32) as u32, token.0 as u32)
}

/// What other threads ask of the reactor, applied in the order queued.
pub(crate) enum Command {
    /// Route socket tokens carrying this service's index to it.
    AddService(Arc<Service>),
    /// The service exited: forget it, and take it off every listener's
    /// hosts. It names the service, not only its index: the index may
    /// already be reused, and the new service's `AddService` queued first.
    RemoveService { index: u32, id: u64 },
    /// Post `Event::Timer { id }` to the service at `deadline` (`now_ms`).
    AddTimer {
        deadline: u64,
        service: Arc<Service>,
        id: u64,
    },
    /// Poll a listener bound by `Listeners::listen`.
    /// `capped`: refuse its accepts at `max_conns`.
    AddListener {
        id: u32,
        listener: mio::net::TcpListener,
        capped: bool,
    },
    /// Add a host to the listener's (it gets a share of the connections),
    /// or to its waiting hosts while joins are held (step 5).
    JoinListener { id: u32, host: Arc<Service> },
    /// Close every listener (shutdown).
    CloseListeners,
    /// Hosts that join from now on wait until the next `SwitchHosts`.
    HoldJoins,
    /// Step 5: take `retire` off every listener, admit the waiting hosts,
    /// close the listeners in `close`, then tell `done`.
    SwitchHosts {
        retire: Vec<u64>,
        close: Vec<u32>,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// How other threads reach the reactor (step 1).
pub(crate) struct Handle {
    /// Queued commands; `None` once the reactor has ended (later commands
    /// are dropped, so whoever waits for an answer is told).
    commands: Mutex<Option<Vec<Command>>>,
    waker: Waker,
    /// The reactor is in, or about to enter, a blocking poll.
    sleeping: AtomicBool,
    /// A clone of the poll's registry: workers register connection sockets
    /// on it directly (`epoll_ctl` is thread-safe; see docs/internals.md).
    registry: Registry,
}

impl Handle {
    pub(crate) fn new(poll: &Poll) -> io::Result<Handle> {
        Ok(Handle {
            commands: Mutex::new(Some(Vec::new())),
            waker: Waker::new(poll.registry(), WAKER_TOKEN)?,
            sleeping: AtomicBool::new(false),
            registry: poll.registry().try_clone()?,
        })
    }

    pub(crate) fn command(&self, command: Command) {
        match self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(queue) => queue.push(command),
            None => return,
        }
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Wakes a blocking poll (the driver sleeper of the pool's idle
    /// protocol, `scheduler/idle.rs`).
    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// The runtime stops: commands queued and later are dropped (whoever
    /// waits for an answer is told), and a blocking poll returns.
    pub(crate) fn stop(&self) {
        self.close();
        self.wake();
    }

    fn has_commands(&self) -> bool {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|queue| !queue.is_empty())
    }

    /// Drop what is queued and what comes later.
    fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// How the reactor runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Accepted connections alive at once; past it new ones are closed.
    pub(crate) max_conns: usize,
}

struct Listener {
    socket: mio::net::TcpListener,
    hosts: Vec<Arc<Service>>,
    /// Hosts that joined while joins were held: they get connections once
    /// `SwitchHosts` admits them (step 5).
    waiting: Vec<Arc<Service>>,
    /// Accept failed for lack of descriptors: retry at this time.
    retry_at: Option<Instant>,
    /// Refuse accepts at `max_conns` (all but the admin listener).
    capped: bool,
    /// Accept at the next dispatch: hosts joined, or were switched, and
    /// connections may wait in the backlog whose (edge-triggered)
    /// readiness came while no host was there.
    due: bool,
}

pub(crate) struct Reactor {
    poll: Poll,
    handle: Arc<Handle>,
    /// What the last poll found (`Driver::poll`), until dispatched.
    events: Events,
    /// Accepted connections alive (see [`ConnectionCount`]).
    connections: Arc<AtomicUsize>,
    settings: Settings,
    services: Vec<Option<Arc<Service>>>,
    listeners: Vec<Option<Listener>>,
    timers: TimerWheel<(Arc<Service>, u64)>,
    expired: Vec<(Arc<Service>, u64)>,
    commands: Vec<Command>,
    /// Joins wait until the next `SwitchHosts` (step 5).
    holding_joins: bool,
    /// Accepts refused since the last log line about it.
    refused: u64,
    refused_logged_at: Option<Instant>,
    /// Counted for the console and `/metrics` (`stats.rs`).
    accepts: Arc<Accepts>,
}

impl Reactor {
    pub(crate) fn new(
        poll: Poll,
        handle: Arc<Handle>,
        connections: Arc<AtomicUsize>,
        accepts: Arc<Accepts>,
        settings: Settings,
    ) -> Reactor {
        Reactor {
            poll,
            handle,
            events: Events::with_capacity(EVENTS_PER_POLL),
            connections,
            settings,
            services: Vec::new(),
            listeners: Vec::new(),
            timers: TimerWheel::new(now_ms()),
            expired: Vec::new(),
            commands: Vec::new(),
            holding_joins: false,
            refused: 0,
            refused_logged_at: None,
            accepts,
        }
    }

    /// Step 2's poll: commands, then one `epoll_wait`, then commands again.
    fn poll_once(&mut self, block: bool) {
        self.drain_commands();
        let accept_due = self.listeners.iter().flatten().any(|l| l.due);
        let mut timeout = if block && !accept_due {
            let now = now_ms();
            self.timers
                .next_deadline()
                .map(|deadline| Duration::from_millis(deadline.saturating_sub(now)))
        } else {
            Some(Duration::ZERO)
        };
        if self.retrying() {
            timeout = Some(timeout.map_or(ACCEPT_RETRY, |t| t.min(ACCEPT_RETRY)));
        }
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            self.handle.sleeping.store(true, Ordering::SeqCst);
            if self.handle.has_commands() {
                self.handle.sleeping.store(false, Ordering::SeqCst);
                self.drain_commands();
                timeout = Some(Duration::ZERO);
            }
        }
        let result = self.poll.poll(&mut self.events, timeout);
        if blocking {
            self.handle.sleeping.store(false, Ordering::SeqCst);
        }
        if let Err(e) = result {
            self.events.clear();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("reactor poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            return;
        }
        // Commands again, before dispatching: a service registers its
        // sockets only after its AddService command was queued, but that
        // command may have arrived while we were in poll. Dispatching first
        // would drop the socket's (edge-triggered, never repeated) event.
        if !self.events.is_empty() {
            self.drain_commands();
        }
    }

    /// Step 2's dispatch: readiness, accepts, retried accepts, timers.
    fn dispatch_found(&mut self, pool: &Pool) -> bool {
        let mut busy = false;
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            if event.token() == WAKER_TOKEN {
                continue;
            }
            busy = true;
            let (service_index, slot) = split_token(event.token());
            if service_index == LISTENER_SERVICE {
                self.accept(pool, slot);
                continue;
            }
            let mut readiness = Readiness::empty();
            if event.is_readable() {
                readiness = readiness | Readiness::READABLE;
            }
            if event.is_writable() {
                readiness = readiness | Readiness::WRITABLE;
            }
            if event.is_error() || event.is_read_closed() || event.is_write_closed() {
                readiness = readiness | Readiness::HANGUP;
            }
            if let Some(Some(service)) = self.services.get(service_index as usize) {
                pool.post(service, Event::Io { slot, readiness });
            }
        }
        self.events = events;
        self.events.clear();
        self.accept_due(pool);
        if !self.timers.is_empty() {
            self.timers.advance(now_ms(), &mut self.expired);
            for (service, id) in self.expired.drain(..) {
                busy = true;
                pool.post(&service, Event::Timer { id });
            }
        }
        busy
    }

    fn retrying(&self) -> bool {
        self.listeners
            .iter()
            .flatten()
            .any(|listener| listener.retry_at.is_some())
    }

    /// Applies queued commands.
    fn drain_commands(&mut self) {
        {
            let mut queue = self
                .handle
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match queue.as_mut() {
                Some(queue) if !queue.is_empty() => std::mem::swap(queue, &mut self.commands),
                _ => return,
            }
        }
        let mut commands = std::mem::take(&mut self.commands);
        for command in commands.drain(..) {
            match command {
                Command::AddService(service) => {
                    let index = service.index() as usize;
                    if self.services.len() <= index {
                        self.services.resize(index + 1, None);
                    }
                    self.services[index] = Some(service);
                }
                Command::RemoveService { index, id } => {
                    if let Some(entry) = self.services.get_mut(index as usize) {
                        if entry.as_ref().is_some_and(|service| service.id() == id) {
                            *entry = None;
                        }
                    }
                    for listener in self.listeners.iter_mut().flatten() {
                        listener.hosts.retain(|host| host.id() != id);
                        listener.waiting.retain(|host| host.id() != id);
                    }
                }
                Command::AddTimer {
                    deadline,
                    service,
                    id,
                } => self.timers.insert(deadline, (service, id)),
                Command::AddListener {
                    id,
                    mut listener,
                    capped,
                } => {
                    let token = token(LISTENER_SERVICE, id);
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut listener, token, Interest::READABLE)
                    {
                        tracing::error!("cannot register listener: {e}");
                        continue;
                    }
                    let index = id as usize;
                    if self.listeners.len() <= index {
                        self.listeners.resize_with(index + 1, || None);
                    }
                    self.listeners[index] = Some(Listener {
                        socket: listener,
                        hosts: Vec::new(),
                        waiting: Vec::new(),
                        retry_at: None,
                        capped,
                        due: false,
                    });
                }
                Command::JoinListener { id, host } => {
                    if let Some(Some(listener)) = self.listeners.get_mut(id as usize) {
                        if self.holding_joins {
                            listener.waiting.push(host);
                        } else {
                            listener.hosts.push(host);
                            // Connections may have queued before the first host joined.
                            listener.due = true;
                        }
                    }
                }
                Command::CloseListeners => {
                    for listener in self.listeners.drain(..).flatten() {
                        close_listener(&self.poll, listener);
                    }
                }
                Command::HoldJoins => self.holding_joins = true,
                Command::SwitchHosts {
                    retire,
                    close,
                    done,
                } => {
                    self.switch_hosts(&retire, &close);
                    let _ = done.send(());
                }
            }
        }
        self.commands = commands;
    }

    /// Step 5, in one command: no connection is accepted between taking
    /// the old hosts off and admitting the new ones, and the sockets that
    /// stay are never closed, so no client is refused.
    fn switch_hosts(&mut self, retire: &[u64], close: &[u32]) {
        self.holding_joins = false;
        for &id in close {
            if let Some(listener) = self.listeners.get_mut(id as usize).and_then(Option::take) {
                close_listener(&self.poll, listener);
            }
        }
        for listener in self.listeners.iter_mut().flatten() {
            listener.hosts.retain(|host| !retire.contains(&host.id()));
            listener.waiting.retain(|host| !retire.contains(&host.id()));
            let admitted = std::mem::take(&mut listener.waiting);
            listener.hosts.extend(admitted);
            // Connections that queued in the backlog while a listener had
            // no host got their (edge-triggered) readiness already.
            listener.due = true;
        }
    }

    /// Accepts on the listeners whose accept is due: joined or switched
    /// hosts, or a retry after running out of descriptors.
    fn accept_due(&mut self, pool: &Pool) {
        if !self
            .listeners
            .iter()
            .flatten()
            .any(|l| l.due || l.retry_at.is_some())
        {
            return;
        }
        let now = Instant::now();
        for id in 0..self.listeners.len() {
            let due = self.listeners[id]
                .as_ref()
                .is_some_and(|l| l.due || l.retry_at.is_some_and(|at| at <= now));
            if due {
                self.accept(pool, id as u32);
            }
        }
    }

    /// Accepts until `WouldBlock`, handing each connection to the host with
    /// the fewest connections.
    fn accept(&mut self, pool: &Pool, id: u32) {
        let max_conns = self.settings.max_conns;
        let Some(Some(listener)) = self.listeners.get_mut(id as usize) else {
            return;
        };
        listener.retry_at = None;
        listener.due = false;
        if listener.hosts.is_empty() {
            return;
        }
        loop {
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    if listener.capped && self.connections.load(Ordering::Relaxed) >= max_conns {
                        drop(stream);
                        bump(&self.accepts.refused);
                        self.refused += 1;
                        let log_due = self
                            .refused_logged_at
                            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
                        if log_due {
                            tracing::warn!(
                                "connection limit reached (--max-conns {max_conns}): closed {} new connection(s), latest from {peer}",
                                self.refused
                            );
                            self.refused = 0;
                            self.refused_logged_at = Some(Instant::now());
                        }
                        continue;
                    }
                    // Latency only: a socket that refuses TCP_NODELAY still works.
                    let _ = stream.set_nodelay(true);
                    let host = listener.hosts.iter().min_by_key(|h| h.load()).cloned();
                    let Some(host) = host else { return };
                    bump(&self.accepts.accepted);
                    let count = ConnectionCount::new(&self.connections, &host.load_counter());
                    pool.post(
                        &host,
                        Event::Accept {
                            listener: id,
                            accepted: Accepted {
                                stream,
                                peer,
                                count,
                            },
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE and friends: the connection stays in the
                    // backlog; with edge triggering no new event would come,
                    // so retry on a timer.
                    tracing::warn!("accept failed: {e}; retrying shortly");
                    listener.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }
}

impl Driver for Reactor {
    fn poll(&mut self, block: bool) {
        self.poll_once(block);
    }

    fn dispatch(&mut self, pool: &Pool) -> bool {
        self.dispatch_found(pool)
    }
}
