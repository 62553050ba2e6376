//! `lunet serve` once its runtime is up: generations of hosts, reload,
//! drain and stop. The calling thread owns the server's state and takes
//! every request from one channel ([`Control`]): signals, the console's
//! `reload`, and the outcome of each launch.
//!
//! Protocol:
//! 1. A generation is the hosts started from one reading of the script.
//!    Launching one (at start, and at each reload) runs on a thread of its
//!    own: read and compile the script, `Runtime::hold_joins`, build and
//!    start the hosts, wait until every main chunk has returned. Their
//!    `lunet.listen` calls join the listeners (the same sockets, for the
//!    same addresses) but get no connection yet.
//! 2. Once all have started, `Runtime::switch_hosts` admits them and takes
//!    the previous generation off the listeners in one step of the
//!    reactor: the sockets stay open and no client is refused. The old
//!    hosts then get `Event::Shutdown` (their `lunet.on_shutdown` hooks
//!    run), and a thread waits, at most `--grace`, until they hold no
//!    connection and no session, then kills them.
//! 3. A launch that fails (the script does not compile, a main chunk
//!    raises, a host exits) kills what it started and retires it; the
//!    serving generation never notices, and the log says why. At start
//!    there is nothing to fall back on: the command fails.
//! 4. A reload asked for while a launch runs is done after it (the script
//!    may have changed again meanwhile); the console's replies wait for it.
//! 5. SIGINT/SIGTERM: a launch in progress is cancelled (3); every service
//!    but the admin is taken off the listeners (which closes them) and
//!    drains as in 2, at most `--grace`; then the process ends. `/health`
//!    answers 503 from then on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use lunet_core::{Message, Runtime, Service};
use lunet_lua::admin::{Admin, Health, HealthState, ReloadReply};
use lunet_lua::protocol::MessageKind;
use lunet_lua::{Launch, LaunchError, Progress, Script};

use crate::signals;

/// Builds and starts the hosts of one generation from `script`, one per
/// name (`lunet serve`'s options decide how).
pub type LaunchHosts = Arc<dyn Fn(&Script, &[String]) -> Result<Launch, LaunchError> + Send + Sync>;

/// What the server's thread is asked.
pub enum Control {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(i32),
    /// The console's `reload`.
    Reload(ReloadReply),
    /// A launch ended: the hosts' ids, or why it failed (step 3).
    Launched(u32, std::result::Result<Vec<u64>, String>),
}

/// What `lunet serve` runs.
pub struct Server {
    pub runtime: Runtime,
    pub script: PathBuf,
    /// Hosts per generation.
    pub hosts: usize,
    pub grace: Duration,
    pub health: Arc<Health>,
    pub admin: Option<Admin>,
    pub launch: LaunchHosts,
    /// Called once, when the first generation serves (a supervised
    /// process reports it, `processes.rs`).
    pub serving: Box<dyn FnMut(&Runtime) + Send>,
}

/// The hosts started from one reading of the script (step 1).
struct Generation {
    number: u32,
    hosts: Vec<u64>,
}

/// A launch in progress, and who waits for its outcome.
struct Launching {
    number: u32,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    replies: Vec<ReloadReply>,
}

struct Supervisor {
    server: Server,
    sender: Sender<Control>,
    serving: Option<Generation>,
    launching: Option<Launching>,
    /// Step 4: a reload was asked for during a launch; these wait for it.
    again: Option<Vec<ReloadReply>>,
    next_number: u32,
}

/// Runs the server until SIGINT/SIGTERM (`Ok`) or until its first
/// generation fails to start (`Err`). `sender` is `control`'s other end.
pub fn serve(server: Server, control: Receiver<Control>, sender: Sender<Control>) -> Result<()> {
    let mut supervisor = Supervisor {
        server,
        sender,
        serving: None,
        launching: None,
        again: None,
        next_number: 0,
    };
    supervisor.launch(Vec::new());
    loop {
        // The senders (signals, console, launches) live as long as we do.
        let Ok(request) = control.recv() else {
            return Ok(());
        };
        match request {
            Control::Signal(libc::SIGHUP) => {
                tracing::info!("SIGHUP: reloading {}", supervisor.script());
                supervisor.reload(None);
            }
            Control::Signal(signal) => {
                supervisor.stop(signal);
                return Ok(());
            }
            Control::Reload(reply) => {
                tracing::info!("console: reloading {}", supervisor.script());
                supervisor.reload(Some(reply));
            }
            Control::Launched(number, outcome) => supervisor.launched(number, outcome)?,
        }
    }
}

impl Supervisor {
    fn script(&self) -> String {
        self.server.script.display().to_string()
    }

    fn reload(&mut self, reply: Option<ReloadReply>) {
        if self.launching.is_some() {
            // Step 4.
            self.again.get_or_insert_with(Vec::new).extend(reply);
            return;
        }
        self.launch(reply.into_iter().collect());
    }

    /// Step 1: starts the next generation on a thread of its own.
    fn launch(&mut self, replies: Vec<ReloadReply>) {
        let number = self.next_number;
        self.next_number += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        let thread = {
            let runtime = self.server.runtime.clone();
            let script = self.server.script.clone();
            let launch = self.server.launch.clone();
            let hosts = self.server.hosts;
            let cancel = cancel.clone();
            let sender = self.sender.clone();
            std::thread::spawn(move || {
                let outcome = launch_generation(&runtime, &script, &launch, number, hosts, &cancel);
                let _ = sender.send(Control::Launched(number, outcome));
            })
        };
        self.launching = Some(Launching {
            number,
            cancel,
            thread,
            replies,
        });
    }

    /// Steps 2 and 3.
    fn launched(
        &mut self,
        number: u32,
        outcome: std::result::Result<Vec<u64>, String>,
    ) -> Result<()> {
        let Some(launching) = self.launching.take_if(|l| l.number == number) else {
            return Ok(()); // cancelled by a stop: already handled
        };
        let _ = launching.thread.join();
        let runtime = &self.server.runtime;
        let script = self.script();
        match outcome {
            Ok(hosts) => {
                let count = hosts.len();
                let fresh = Generation { number, hosts };
                let old = self.serving.replace(fresh);
                let retire = old.as_ref().map_or(&[][..], |old| &old.hosts[..]);
                runtime.switch_hosts(retire);
                let text = match old {
                    None => {
                        self.server.health.set(HealthState::Serving);
                        (self.server.serving)(runtime);
                        format!(
                            "serving {script} with {} workers and {count} hosts",
                            runtime.config().workers
                        )
                    }
                    Some(old) => {
                        let text = format!(
                            "reloaded {script}: generation {number} serves with {count} hosts; \
                             generation {} drains (--grace {}s)",
                            old.number,
                            self.server.grace.as_secs_f64()
                        );
                        let (runtime, grace) = (runtime.clone(), self.server.grace);
                        std::thread::spawn(move || drain(&runtime, old, grace));
                        text
                    }
                };
                tracing::info!("{text}");
                for reply in launching.replies {
                    reply.send(Ok(text.clone()));
                }
            }
            Err(why) => {
                let Some(serving) = &self.serving else {
                    return Err(anyhow!(why));
                };
                tracing::error!(
                    "reload of {script} failed, generation {} keeps serving: {why}",
                    serving.number
                );
                for reply in launching.replies {
                    reply.send(Err(format!("reload failed: {why}")));
                }
            }
        }
        if let Some(replies) = self.again.take() {
            tracing::info!("reloading {script} again, as asked during the last reload");
            self.launch(replies);
        }
        Ok(())
    }

    /// Step 5.
    fn stop(mut self, signal: i32) {
        let runtime = self.server.runtime.clone();
        tracing::info!(
            "{}: no longer accepting; sessions have {}s to finish",
            signals::name(signal),
            self.server.grace.as_secs_f64()
        );
        self.server.health.set(HealthState::Draining);
        if let Some(launching) = self.launching.take() {
            launching.cancel.store(true, Ordering::Relaxed);
            let _ = launching.thread.join();
        }
        let admin_id = self.server.admin.as_ref().map(|admin| admin.service().id());
        let services: Vec<Arc<Service>> = runtime
            .services()
            .into_iter()
            .filter(|service| Some(service.id()) != admin_id)
            .collect();
        let retire: Vec<u64> = services.iter().map(|service| service.id()).collect();
        runtime.switch_hosts(&retire);
        // The console is left out: it serves on, and its own connections
        // do not keep the server up.
        let left = Draining::start(&runtime, services).wait(self.server.grace);
        if left.is_empty() {
            tracing::info!("all connections closed");
        } else {
            tracing::warn!("grace period over: closing {left}");
        }
        runtime.stop();
    }
}

/// The names of a generation's hosts: `host-0`, ... at start, `host-0.2`,
/// ... for generation 2.
fn host_names(number: u32, hosts: usize) -> Vec<String> {
    (0..hosts)
        .map(|index| match number {
            0 => format!("host-{index}"),
            _ => format!("host-{index}.{number}"),
        })
        .collect()
}

/// Step 1 on the launch's thread; step 3 when it fails.
fn launch_generation(
    runtime: &Runtime,
    path: &std::path::Path,
    launch: &LaunchHosts,
    number: u32,
    hosts: usize,
    cancel: &AtomicBool,
) -> std::result::Result<Vec<u64>, String> {
    let script = crate::load_script(path).map_err(|e| format!("{e:#}"))?;
    crate::compile(&script).map_err(|e| format!("{e:#}"))?;
    runtime.hold_joins();
    let mut launched = match launch(&script, &host_names(number, hosts)) {
        Ok(launched) => launched,
        Err(e) => {
            runtime.switch_hosts(&[]);
            return Err(format!("{:#}", anyhow::Error::from(e)));
        }
    };
    let ids = launched.ids().to_vec();
    let fail = |why: String| {
        for service in ids.iter().filter_map(|id| runtime.service(*id)) {
            runtime.kill(&service, Message::signal(MessageKind::Kill.code()));
        }
        runtime.switch_hosts(&ids);
        Err(why)
    };
    let since = Instant::now();
    let mut warned = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return fail("the server is stopping".into());
        }
        match launched.wait(Some(Duration::from_millis(50))) {
            Ok(Progress::Started) => return Ok(ids),
            Ok(Progress::Gone { .. }) => {
                return fail(format!(
                    "{} failed to start: a host stopped before its main chunk returned",
                    script.path
                ))
            }
            Ok(Progress::Waiting { started }) => {
                if !warned && since.elapsed() > Duration::from_secs(5) {
                    warned = true;
                    tracing::warn!(
                        "{started} of {hosts} hosts have finished running {}'s main chunk \
                         after 5 s; connections go to them once all have",
                        script.path
                    );
                }
            }
            Err(e) => return fail(format!("{} failed to start: {e}", script.path)),
        }
    }
}

/// Step 2, on a thread of its own: the retired generation's hosts finish
/// their connections and sessions, at most `grace`, then stop.
fn drain(runtime: &Runtime, generation: Generation, grace: Duration) {
    let hosts: Vec<Arc<Service>> = generation
        .hosts
        .iter()
        .filter_map(|id| runtime.service(*id))
        .collect();
    let left = Draining::start(runtime, hosts.clone()).wait(grace);
    if left.is_empty() {
        tracing::info!("generation {} drained", generation.number);
    } else {
        tracing::warn!(
            "generation {}: grace period over: closing {left}",
            generation.number
        );
    }
    for host in &hosts {
        runtime.kill(host, Message::signal(MessageKind::Kill.code()));
    }
}

/// Services told to drain (`Event::Shutdown`). One is done once it has
/// handled that event (its events counter moved past the value before it:
/// counters are added after a turn), holds no connection, and has no
/// session left: its connections' handlers, its `lunet.on_shutdown` hooks,
/// its timers and forks have all ended. One that has exited is done.
struct Draining {
    services: Vec<(Arc<Service>, u64)>,
}

/// What a drain left when it ended.
struct Left {
    connections: usize,
    sessions: usize,
}

impl Left {
    fn is_empty(&self) -> bool {
        self.connections == 0 && self.sessions == 0
    }
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} connection(s), {} session(s) left",
            self.connections, self.sessions
        )
    }
}

impl Draining {
    fn start(runtime: &Runtime, services: Vec<Arc<Service>>) -> Draining {
        let services = services
            .into_iter()
            .map(|service| {
                let before = service.stats().totals().events;
                runtime.post(&service, lunet_core::Event::Shutdown);
                (service, before)
            })
            .collect();
        Draining { services }
    }

    fn left(&self) -> Left {
        let mut left = Left {
            connections: 0,
            sessions: 0,
        };
        for (service, before) in &self.services {
            if service.is_closed() {
                continue;
            }
            left.connections += service.load();
            left.sessions += if service.stats().totals().events > *before {
                service.stats().sessions()
            } else {
                1 // the shutdown itself, not yet handled
            };
        }
        left
    }

    /// Waits until every service is done, at most `grace`; what was left.
    fn wait(&self, grace: Duration) -> Left {
        let deadline = Instant::now() + grace;
        loop {
            let left = self.left();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
