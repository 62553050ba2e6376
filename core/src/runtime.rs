//! The runtime: starts the threads and is the handle every other layer uses
//! to reach them (spawn services, post events, add timers, register
//! sockets, bind listeners).
//!
//! It composes parts, each owned by the module of the thread that serves
//! it, and hands each thread exactly the parts it uses:
//!
//! | part | module | used by |
//! | --- | --- | --- |
//! | reactor handle (commands, waker, registry) | `reactor` | reactor; callers; workers (through `on_exit`) |
//! | pool (queues, idle workers, post path) | `scheduler` | workers, reactor, lane, callers |
//! | directory (services by id, names, exits) | `directory` | callers; monitor; workers (through `on_exit`) |
//! | listeners (key to listener id) | `listeners` | callers |
//! | lane (blocking tasks) | `lane` | lane threads, callers |
//! | watch (worker slots, coarse clock) | `monitor` | workers, monitor |
//! | connection count | `event::ConnectionCount` | reactor, callers |
//! | counters (`stats.rs`) | on each part that counts | readers through [`Runtime::stats`] |
//!
//! No part refers to the runtime, and only this module refers to all of
//! them: the pool tells its owner that a service exited through the
//! `on_exit` hook wired here (remove it from the directory, then from the
//! reactor).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Registry};

pub use crate::clock::now_ms;
pub use crate::directory::{NameRefused, NameTaken};
pub use crate::listeners::ListenError;

use crate::directory::Directory;
use crate::event::{Event, Message};
use crate::lane::{Lane, Task};
use crate::listeners::Listeners;
use crate::monitor::{Monitor, Watch};
use crate::reactor::{self, Command, Reactor};
use crate::scheduler::{self, run_worker, Pool};
use crate::service::{PostError, Service, ServiceBody};
use crate::stats::{Accepts, Snapshot};

/// Tuning and bounds of a runtime. Every bound is explicit.
#[derive(Clone, Debug)]
pub struct Config {
    /// Worker threads.
    pub workers: usize,
    /// How long an idle worker keeps looking for work and polling the
    /// sockets without blocking, yielding the CPU, before it sleeps. 50 us
    /// took a reactor + pool prototype from 0.65x to 0.92x of a
    /// single-threaded loop here.
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
    /// Lane threads (blocking tasks).
    pub lane_threads: usize,
    /// Lane tasks queued at once; past it callers wait for a slot.
    pub lane_queue: usize,
    /// Measure the wall time of every turn, for the busy times of the
    /// console and `/metrics` (`stats.rs`): two clock reads per turn, about
    /// 80 ns on the test machine, so off unless someone looks.
    pub time_turns: bool,
    /// Listening sockets get SO_REUSEPORT: other processes may bind the
    /// same addresses (`lunet serve --processes`).
    pub reuse_port: bool,
    /// Listener keys bound to these addresses instead of the ones asked
    /// for (`listeners.rs`, step 5).
    pub bind_as: HashMap<String, SocketAddr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            spin: Duration::from_micros(50),
            budget: 256,
            max_conns: 100_000,
            backlog: 4096,
            lane_threads: 4,
            lane_queue: 1024,
            slice_warn: Duration::from_secs(1),
            slice_kill: Duration::from_secs(5),
            time_turns: false,
            reuse_port: false,
            bind_as: HashMap::new(),
        }
    }
}

/// The parts of a runtime (see the module header).
struct Parts {
    config: Config,
    reactor: Arc<reactor::Handle>,
    pool: Arc<Pool>,
    directory: Arc<Directory>,
    listeners: Listeners,
    lane: Arc<Lane>,
    watch: Arc<Watch>,
    connections: Arc<AtomicUsize>,
    accepts: Arc<Accepts>,
}

/// A handle on a running runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    parts: Arc<Parts>,
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
    /// Starts the reactor, `config.workers` workers, the monitor and the
    /// lane threads.
    pub fn start(config: Config) -> io::Result<(Runtime, Threads)> {
        now_ms();
        let workers = config.workers.max(1);
        let poll = Poll::new()?;
        let reactor = Arc::new(reactor::Handle::new(&poll)?);
        let directory = Arc::new(Directory::new());
        let on_exit: scheduler::OnExit = {
            let directory = directory.clone();
            let reactor = reactor.clone();
            Box::new(move |service: &Arc<Service>| {
                directory.remove(service);
                reactor.command(Command::RemoveService {
                    index: service.index(),
                    id: service.id(),
                });
            })
        };
        let settings = scheduler::Settings {
            budget: config.budget,
            spin: config.spin,
            time_turns: config.time_turns,
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let accepts = Arc::new(Accepts::default());
        // No thread of its own: idle workers run it (scheduler step 6).
        let driver = Reactor::new(
            poll,
            reactor.clone(),
            connections.clone(),
            accepts.clone(),
            reactor::Settings {
                max_conns: config.max_conns,
            },
        );
        let wake_driver: scheduler::WakeDriver = {
            let reactor = reactor.clone();
            Box::new(move || reactor.wake())
        };
        let (pool, locals) =
            Pool::with_driver(workers, settings, on_exit, Box::new(driver), wake_driver);
        let parts = Arc::new(Parts {
            reactor,
            pool: Arc::new(pool),
            directory,
            listeners: Listeners::new(config.backlog, config.reuse_port, config.bind_as.clone()),
            lane: Arc::new(Lane::new(config.lane_queue)),
            watch: Arc::new(Watch::new(workers)),
            connections,
            accepts,
            config,
        });
        let mut handles = Vec::new();
        let mut spawn = |name: String, body: Box<dyn FnOnce() + Send>| -> io::Result<()> {
            handles.push(std::thread::Builder::new().name(name).spawn(body)?);
            Ok(())
        };
        for (index, local) in locals.into_iter().enumerate() {
            let pool = parts.pool.clone();
            let watch = parts.watch.clone();
            spawn(
                format!("lunet-worker-{index}"),
                Box::new(move || run_worker(pool, watch, index, local)),
            )?;
        }
        let pool = parts.pool.clone();
        let monitor = Monitor::new(
            parts.watch.clone(),
            parts.directory.clone(),
            parts.config.slice_warn,
            parts.config.slice_kill,
        )
        .every_tick(Box::new(move || pool.watch_driver()));
        spawn("lunet-monitor".into(), Box::new(move || monitor.run()))?;
        for index in 0..parts.config.lane_threads.max(1) {
            let lane = parts.lane.clone();
            let pool = parts.pool.clone();
            spawn(
                format!("lunet-lane-{index}"),
                Box::new(move || lane.run(&pool)),
            )?;
        }
        Ok((Runtime { parts }, Threads { handles }))
    }

    pub fn config(&self) -> &Config {
        &self.parts.config
    }

    /// Creates a service around `body`; it runs when its first event comes.
    pub fn spawn_service(&self, name: &str, body: Box<dyn ServiceBody>) -> Arc<Service> {
        let service = self.parts.directory.insert(name, body);
        self.parts
            .reactor
            .command(Command::AddService(service.clone()));
        service
    }

    /// A live service by id.
    pub fn service(&self, id: u64) -> Option<Arc<Service>> {
        self.parts.directory.get(id)
    }

    /// Every live service.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.parts.directory.all()
    }

    /// Posts an event; false if the service is dead (the event is dropped).
    pub fn post(&self, service: &Arc<Service>, event: Event) -> bool {
        self.parts.pool.post(service, event)
    }

    /// Posts a message from another service: fails when the target is dead,
    /// killed, or its mailbox is at its hard cap. A refused message comes
    /// back whole, so what it carries (an attached connection) is not lost.
    pub fn post_message(
        &self,
        service: &Arc<Service>,
        message: Message,
    ) -> Result<(), (PostError, Message)> {
        match self
            .parts
            .pool
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
    pub fn kill(&self, service: &Arc<Service>, signal: Message) -> bool {
        service.close_mailbox();
        self.post(service, Event::Message(signal))
    }

    /// Gives service `id` a name; fails if another live service has it.
    /// A trusted registration may take a reserved name (see
    /// [`Runtime::reserve_names`]); an untrusted one may not.
    pub fn register_name(&self, name: &str, id: u64, trusted: bool) -> Result<(), NameRefused> {
        self.parts.directory.register_name(name, id, trusted)
    }

    /// The names service `id` holds when it goes are reserved: afterwards
    /// only a trusted registration takes them (a sandbox that killed their
    /// holder cannot take them over).
    pub fn reserve_names(&self, id: u64) {
        self.parts.directory.reserve_names(id)
    }

    /// Marks service `id` as one a sandboxed service may not kill (hosts,
    /// the first service of `lunet run`).
    pub fn protect(&self, id: u64) {
        self.parts.directory.protect(id)
    }

    /// Whether [`Runtime::protect`] marked service `id`.
    pub fn is_protected(&self, id: u64) -> bool {
        self.parts.directory.is_protected(id)
    }

    /// The live service with this name.
    pub fn query_name(&self, name: &str) -> Option<u64> {
        self.parts.directory.query_name(name)
    }

    /// Blocks the calling (non-worker) thread until service `id` has exited.
    pub fn wait_exit(&self, id: u64) {
        self.parts.directory.wait_exit(id, None);
    }

    /// [`Runtime::wait_exit`] for at most `timeout`; true if it has exited.
    pub fn wait_exit_timeout(&self, id: u64, timeout: Duration) -> bool {
        self.parts.directory.wait_exit(id, Some(timeout))
    }

    /// Asks the reactor to post `Event::Timer { id }` to `service` at
    /// `deadline_ms` (see [`now_ms`]).
    pub fn add_timer(&self, service: &Arc<Service>, deadline_ms: u64, id: u64) {
        self.parts.reactor.command(Command::AddTimer {
            deadline: deadline_ms,
            service: service.clone(),
            id,
        });
    }

    /// The registry to register connection sockets with, using
    /// [`crate::reactor::token`] tokens.
    pub fn registry(&self) -> &Registry {
        self.parts.reactor.registry()
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
    ) -> Result<(u32, SocketAddr), ListenError> {
        self.parts
            .listeners
            .listen(&self.parts.reactor, addr, key, host, true)
    }

    /// [`Runtime::listen`] for a listener whose connections are accepted
    /// even at `max_conns` (they are still counted): the admin listener,
    /// which must answer when the server is full.
    pub fn listen_uncapped(
        &self,
        addr: &str,
        key: &str,
        host: &Arc<Service>,
    ) -> Result<(u32, SocketAddr), ListenError> {
        self.parts
            .listeners
            .listen(&self.parts.reactor, addr, key, host, false)
    }

    /// Every listener's key (see [`Runtime::listen`]) and bound address,
    /// sorted by key.
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.parts.listeners.bound()
    }

    /// Hosts that join a listener from now on get no connection until the
    /// next [`Runtime::switch_hosts`]: `lunet serve` starts (and reloads)
    /// its hosts this way, so connections reach them only once every main
    /// chunk has run, and spread over all of them.
    pub fn hold_joins(&self) {
        self.parts.reactor.command(Command::HoldJoins);
    }

    /// Takes the hosts in `retire` off every listener and admits those that
    /// joined since [`Runtime::hold_joins`], in one step of the reactor;
    /// listeners no host is left on are closed. The sockets that stay are
    /// never closed, so no client is refused. Returns once the reactor has
    /// switched: later connections go to the admitted hosts only.
    pub fn switch_hosts(&self, retire: &[u64]) {
        self.parts.listeners.switch(&self.parts.reactor, retire);
    }

    /// Stops accepting: listeners are closed.
    pub fn close_listeners(&self) {
        self.parts.listeners.close(&self.parts.reactor);
    }

    /// Accepted connections alive.
    pub fn connections(&self) -> usize {
        self.parts.connections.load(Ordering::Relaxed)
    }

    /// The numbers the console and `/metrics` show (see `stats.rs`). Walks
    /// every service and locks each mailbox: not for the hot path.
    pub fn stats(&self) -> Snapshot {
        let (services, retired) = self.parts.directory.snapshot();
        let (slice_warnings, slice_kills) = self.parts.watch.slice_reports();
        Snapshot {
            services,
            retired,
            connections: self.connections(),
            accepted: self.parts.accepts.accepted.load(Ordering::Relaxed),
            refused: self.parts.accepts.refused.load(Ordering::Relaxed),
            slice_warnings,
            slice_kills,
            lane: self.parts.lane.snapshot(),
            workers: self.parts.watch.workers(),
        }
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
        self.parts.lane.submit(service, ticket, task)
    }

    /// Stops every thread of the runtime (workers and lane threads finish
    /// what they run; the monitor stops at its next tick).
    pub fn stop(&self) {
        self.parts.lane.stop();
        self.parts.reactor.stop();
        self.parts.pool.stop();
        self.parts.watch.stop();
    }
}
