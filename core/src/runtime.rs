//! The runtime: starts the reactor and the workers and is the handle every
//! other layer uses to reach them (post events, add timers, register
//! sockets, bind listeners).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Poll, Registry, Waker};

use crate::event::Event;
use crate::lane::{Lane, Task};
use crate::reactor::{Command, Reactor, WAKER_TOKEN};
use crate::scheduler::{run_worker, Pool};
use crate::service::{PostError, Service, ServiceBody};

/// Tuning and bounds of a runtime. Every bound is explicit.
#[derive(Clone, Debug)]
pub struct Config {
    /// Worker threads.
    pub workers: usize,
    /// How long the reactor keeps polling and idle workers keep looking for
    /// work, yielding the CPU, before they block. 50 us took a reactor +
    /// pool prototype from 0.65x to 0.92x of a single-threaded loop here.
    pub spin: Duration,
    /// Events a service handles per turn before others get a worker
    /// (skynet's weight).
    pub budget: usize,
    /// Accepted connections alive at once; past it new ones are closed.
    pub max_conns: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// A slice running longer than this is logged with a traceback (0 = off).
    pub slice_warn: Duration,
    /// A slice running longer than this is interrupted (0 = off).
    pub slice_kill: Duration,
    /// Start with accepting held until [`Runtime::release_accepts`]: `lunet
    /// serve` binds listeners while its hosts start and accepts once all of
    /// them have joined, so early connections spread over every host.
    pub hold_accepts: bool,
    /// Lane threads (blocking tasks).
    pub lane_threads: usize,
    /// Lane tasks queued at once; past it callers wait for a slot.
    pub lane_queue: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            spin: Duration::from_micros(50),
            budget: 256,
            max_conns: 100_000,
            backlog: 4096,
            hold_accepts: false,
            lane_threads: 4,
            lane_queue: 1024,
            slice_warn: Duration::from_secs(1),
            slice_kill: Duration::from_secs(5),
        }
    }
}

static START: OnceLock<Instant> = OnceLock::new();

/// Monotonic milliseconds since the process started using the runtime.
pub fn now_ms() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Default)]
struct ServiceTable {
    by_id: HashMap<u64, Arc<Service>>,
    names: HashMap<String, u64>,
    free_indexes: Vec<u32>,
    next_index: u32,
}

struct ListenerEntry {
    id: u32,
    local: SocketAddr,
}

/// State shared by every thread of a runtime.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) pool: Pool,
    pub(crate) lane: Lane,
    /// One per worker: what it runs now (read by the monitor).
    pub(crate) slots: Vec<crate::monitor::WorkerSlot>,
    /// `now_ms()` as of the monitor's last tick.
    pub(crate) coarse_ms: AtomicU64,
    pub(crate) registry: Registry,
    waker: Waker,
    pub(crate) commands: Mutex<Vec<Command>>,
    pub(crate) reactor_sleeping: AtomicBool,
    services: Mutex<ServiceTable>,
    /// Signalled whenever a service exits.
    exited: std::sync::Condvar,
    next_service_id: AtomicU64,
    /// Accepted connections alive (see `event::ConnectionCount`).
    pub(crate) connections: Arc<AtomicUsize>,
    listeners: Mutex<HashMap<String, ListenerEntry>>,
    next_listener: AtomicU32,
    accepting: AtomicBool,
    /// While set, listeners bind and queue connections in the backlog but
    /// the reactor does not accept (see `Runtime::release_accepts`).
    pub(crate) hold_accepts: AtomicBool,
}

impl Shared {
    /// Pushes an event to a service's mailbox and queues the service if it
    /// was idle. The one scheduling path of the runtime.
    pub(crate) fn post(&self, service: &Arc<Service>, event: Event) -> bool {
        self.post_checked(service, event, false).is_ok()
    }

    pub(crate) fn post_checked(
        &self,
        service: &Arc<Service>,
        event: Event,
        bounded: bool,
    ) -> Result<(), (Event, PostError)> {
        match service.push(event, bounded) {
            Ok(true) => {
                self.pool.schedule(service.clone());
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(refused) => Err(refused),
        }
    }

    pub(crate) fn command(&self, command: Command) {
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(command);
        if self.reactor_sleeping.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    pub(crate) fn service_by_id(&self, id: u64) -> Option<Arc<Service>> {
        let table = self.services.lock().unwrap_or_else(|e| e.into_inner());
        table.by_id.get(&id).cloned()
    }

    pub(crate) fn remove_service(&self, service: &Arc<Service>) {
        {
            let mut table = self.services.lock().unwrap_or_else(|e| e.into_inner());
            table.by_id.remove(&service.id());
            table.free_indexes.push(service.index());
            let id = service.id();
            table.names.retain(|_, owner| *owner != id);
        }
        self.exited.notify_all();
        self.command(Command::RemoveService(service.index()));
    }
}

/// A handle on a running runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

/// Threads of a runtime, to join at exit.
pub struct Threads {
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    pub fn join(self) {
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

impl Runtime {
    /// Starts the reactor and `config.workers` workers.
    pub fn start(config: Config) -> io::Result<(Runtime, Threads)> {
        now_ms();
        let workers = config.workers.max(1);
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let (pool, locals) = Pool::new(workers);
        let hold_accepts = config.hold_accepts;
        let lane = Lane::new(config.lane_queue);
        let lane_threads = config.lane_threads.max(1);
        let shared = Arc::new(Shared {
            config,
            pool,
            lane,
            slots: (0..workers)
                .map(|_| crate::monitor::WorkerSlot::default())
                .collect(),
            coarse_ms: AtomicU64::new(now_ms()),
            registry,
            waker,
            commands: Mutex::new(Vec::new()),
            reactor_sleeping: AtomicBool::new(false),
            services: Mutex::new(ServiceTable::default()),
            exited: std::sync::Condvar::new(),
            next_service_id: AtomicU64::new(1),
            connections: Arc::new(AtomicUsize::new(0)),
            listeners: Mutex::new(HashMap::new()),
            next_listener: AtomicU32::new(0),
            accepting: AtomicBool::new(true),
            hold_accepts: AtomicBool::new(hold_accepts),
        });
        let mut handles = Vec::new();
        let reactor = Reactor::new(poll, shared.clone());
        handles.push(
            std::thread::Builder::new()
                .name("lunet-reactor".into())
                .spawn(move || reactor.run())?,
        );
        let mut threads = Vec::new();
        for (index, local) in locals.into_iter().enumerate() {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("lunet-worker-{index}"))
                .spawn(move || run_worker(shared, index, local))?;
            threads.push(handle.thread().clone());
            handles.push(handle);
        }
        shared.pool.idle.set_threads(threads);
        {
            let shared = shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name("lunet-monitor".into())
                    .spawn(move || crate::monitor::run(shared))?,
            );
        }
        for index in 0..lane_threads {
            let shared = shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("lunet-lane-{index}"))
                    .spawn(move || Lane::run(shared))?,
            );
        }
        Ok((Runtime { shared }, Threads { handles }))
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Creates a service around `body`; it runs when its first event comes.
    pub fn spawn_service(&self, name: &str, body: Box<dyn ServiceBody>) -> Arc<Service> {
        let id = self.shared.next_service_id.fetch_add(1, Ordering::Relaxed);
        let service = {
            let mut table = self
                .shared
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let index = match table.free_indexes.pop() {
                Some(index) => index,
                None => {
                    table.next_index += 1;
                    table.next_index - 1
                }
            };
            let service = Arc::new(Service::new(id, index, name.to_string(), body));
            table.by_id.insert(id, service.clone());
            service
        };
        self.shared.command(Command::AddService(service.clone()));
        service
    }

    /// A live service by id.
    pub fn service(&self, id: u64) -> Option<Arc<Service>> {
        let table = self
            .shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        table.by_id.get(&id).cloned()
    }

    /// Every live service.
    pub fn services(&self) -> Vec<Arc<Service>> {
        let table = self
            .shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        table.by_id.values().cloned().collect()
    }

    /// Posts an event; false if the service is dead (the event is dropped).
    pub fn post(&self, service: &Arc<Service>, event: Event) -> bool {
        self.shared.post(service, event)
    }

    /// Posts a message from another service: fails when the target is dead,
    /// killed, or its mailbox is at its hard cap. A refused message comes
    /// back whole, so what it carries (an attached connection) is not lost.
    pub fn post_message(
        &self,
        service: &Arc<Service>,
        message: crate::event::Message,
    ) -> Result<(), (PostError, crate::event::Message)> {
        match self
            .shared
            .post_checked(service, Event::Message(message), true)
        {
            Ok(()) => Ok(()),
            Err((Event::Message(message), error)) => Err((error, message)),
            Err((_, error)) => unreachable!("a message comes back as a message ({error:?})"),
        }
    }

    /// Kills a service as skynet and Erlang do: from now on messages from
    /// other services are refused as `Dead`; `signal` (the layer above's
    /// "exit now" message, not refused) is queued behind what was already
    /// in the mailbox, which the body answers or drops as it exits. False
    /// if the service was already dead.
    pub fn kill(&self, service: &Arc<Service>, signal: crate::event::Message) -> bool {
        service.close_mailbox();
        self.post(service, Event::Message(signal))
    }

    /// Gives `id` a name; fails if a live service already has it.
    pub fn register_name(&self, name: &str, id: u64) -> Result<(), u64> {
        let mut table = self
            .shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(&owner) = table.names.get(name) {
            if owner != id && table.by_id.contains_key(&owner) {
                return Err(owner);
            }
        }
        table.names.insert(name.to_string(), id);
        Ok(())
    }

    /// The live service with this name.
    pub fn query_name(&self, name: &str) -> Option<u64> {
        let table = self
            .shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        table
            .names
            .get(name)
            .copied()
            .filter(|id| table.by_id.contains_key(id))
    }

    /// Blocks the calling (non-worker) thread until service `id` has exited.
    pub fn wait_exit(&self, id: u64) {
        let mut table = self
            .shared
            .services
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while table.by_id.contains_key(&id) {
            table = self
                .shared
                .exited
                .wait(table)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Asks the reactor to post `Event::Timer { id }` to `service` at
    /// `deadline_ms` (see [`now_ms`]).
    pub fn add_timer(&self, service: &Arc<Service>, deadline_ms: u64, id: u64) {
        self.shared.command(Command::AddTimer {
            deadline: deadline_ms,
            service: service.clone(),
            id,
        });
    }

    /// The registry to register connection sockets with, using
    /// [`crate::reactor::token`] tokens.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Binds (or joins) a listener on `addr` for `host`. All hosts that
    /// listen with the same `key` share one socket; the reactor hands each
    /// accepted connection to the least-loaded of them. (The key is the
    /// address plus which call of the script this is, so two listeners on
    /// port 0 in one script stay two.) Returns the listener id and the bound
    /// address.
    pub fn listen(
        &self,
        addr: &str,
        key: &str,
        host: &Arc<Service>,
    ) -> io::Result<(u32, SocketAddr)> {
        if !self.shared.accepting.load(Ordering::SeqCst) {
            return Err(io::Error::other("the server is shutting down"));
        }
        let mut listeners = self
            .shared
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = listeners.get(key) {
            let id = entry.id;
            let local = entry.local;
            self.shared.command(Command::JoinListener {
                id,
                host: host.clone(),
            });
            return Ok((id, local));
        }
        let socket_addr: SocketAddr = crate::net::parse_addr(addr)?;
        let listener = crate::net::bind_listener(socket_addr, self.shared.config.backlog)?;
        let local = listener.local_addr()?;
        let id = self.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        listeners.insert(key.to_string(), ListenerEntry { id, local });
        tracing::info!("listening on {local}");
        self.shared.command(Command::AddListener { id, listener });
        self.shared.command(Command::JoinListener {
            id,
            host: host.clone(),
        });
        Ok((id, local))
    }

    /// Starts accepting on listeners bound while accepts were held.
    pub fn release_accepts(&self) {
        self.shared.hold_accepts.store(false, Ordering::SeqCst);
        self.shared.command(Command::ReleaseAccepts);
    }

    /// Stops accepting: listeners are closed.
    pub fn close_listeners(&self) {
        self.shared.accepting.store(false, Ordering::SeqCst);
        self.shared.command(Command::CloseListeners);
    }

    /// Accepted connections alive.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Posts `Event::Shutdown` to every service.
    pub fn broadcast_shutdown(&self) {
        for service in self.services() {
            self.post(&service, Event::Shutdown);
        }
    }

    /// Runs `task` on the lane; its result comes back to `service` as
    /// `Event::LaneDone { ticket, .. }`. When the lane queue is full the task
    /// is handed back and the service gets `Event::LaneSlot` once a slot
    /// frees.
    pub fn lane_submit(&self, service: &Arc<Service>, ticket: u64, task: Task) -> Result<(), Task> {
        self.shared.lane.submit(service, ticket, task)
    }

    /// Stops the reactor and the workers (they finish the turn they are in).
    pub fn stop(&self) {
        self.shared.lane.stop();
        self.shared.command(Command::Stop);
        let _ = self.shared.waker.wake();
        self.shared.pool.stop();
    }
}
