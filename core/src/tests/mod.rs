//! Unit tests of the concurrent core, driven by fake service bodies and a
//! fake `Interrupt`: the scheduler and the service state machine
//! (`scheduler.rs`), `Runtime::kill` (`kill.rs`), switching the hosts of
//! listeners and the counters (`hosts.rs`), the lane (`lane.rs`), the
//! monitor (`monitor.rs`) and a spawn/kill storm across threads
//! (`storm.rs`). The loom model of the parking protocol is in
//! `scheduler/loom_idle.rs`.
//!
//! Outcomes are deterministic: a test that waits does so on a channel or a
//! condvar, with a timeout ([`HUNG`]) that only bounds a hung test; nothing
//! asserts a duration.

mod hosts;
mod kill;
mod lane;
mod monitor;
mod scheduler;
mod storm;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::Event;
use crate::monitor::Watch;
use crate::scheduler::{run_worker, Pool, Settings};
use crate::service::{Service, ServiceBody, Status};

/// Bounds a wait that only a hung (failed) test reaches.
pub(crate) const HUNG: Duration = Duration::from_secs(60);

type RunFn = dyn FnMut(&Arc<Service>, &mut VecDeque<Event>) -> Status + Send;

/// A service body made of a closure; what it is left with at exit goes to
/// a channel.
pub(crate) struct FakeBody {
    run: Box<RunFn>,
    bounced: Option<mpsc::Sender<Vec<Event>>>,
}

impl FakeBody {
    pub(crate) fn new(
        run: impl FnMut(&Arc<Service>, &mut VecDeque<Event>) -> Status + Send + 'static,
    ) -> FakeBody {
        FakeBody {
            run: Box::new(run),
            bounced: None,
        }
    }

    /// Sends the events `bounce` gets to `to`.
    pub(crate) fn bouncing_to(mut self, to: mpsc::Sender<Vec<Event>>) -> FakeBody {
        self.bounced = Some(to);
        self
    }

    /// A body that, in its first turn, tells the test it is there and waits
    /// until [`Held::release`]; every turn, the first included, then runs
    /// `run`. Events posted meanwhile queue behind that turn.
    pub(crate) fn held(
        mut run: impl FnMut(&Arc<Service>, &mut VecDeque<Event>) -> Status + Send + 'static,
    ) -> (FakeBody, Held) {
        let gate = Gate::new();
        let (entering, entered) = mpsc::channel();
        let mut first_turn = Some((gate.clone(), entering));
        let body = FakeBody::new(move |service, events| {
            if let Some((gate, entering)) = first_turn.take() {
                let _ = entering.send(());
                gate.wait();
            }
            run(service, events)
        });
        (body, Held { gate, entered })
    }

    /// A body that sends every event it gets, with its service's id, to `to`.
    pub(crate) fn forwarding(to: mpsc::Sender<(u64, Event)>) -> FakeBody {
        FakeBody::new(move |service, events| {
            for event in events.drain(..) {
                let _ = to.send((service.id(), event));
            }
            Status::Alive
        })
    }
}

impl ServiceBody for FakeBody {
    fn run(&mut self, service: &Arc<Service>, events: &mut VecDeque<Event>) -> Status {
        (self.run)(service, events)
    }

    fn bounce(&mut self, _service: &Arc<Service>, events: VecDeque<Event>) {
        if let Some(to) = &self.bounced {
            let _ = to.send(events.into());
        }
    }
}

/// A pool with its workers and no runtime around it: services are created
/// here, and `on_exit` reports each retired service's id.
pub(crate) struct TestPool {
    pub(crate) pool: Arc<Pool>,
    exited: mpsc::Receiver<u64>,
    next_id: AtomicU64,
    workers: Vec<JoinHandle<()>>,
}

impl TestPool {
    pub(crate) fn start(workers: usize, budget: usize) -> TestPool {
        let (exits, exited) = mpsc::channel();
        let settings = Settings {
            budget,
            spin: Duration::from_micros(50),
            time_turns: true,
        };
        let on_exit = Box::new(move |service: &Arc<Service>| {
            let _ = exits.send(service.id());
        });
        let (pool, locals) = Pool::new(workers, settings, on_exit);
        let pool = Arc::new(pool);
        let watch = Arc::new(Watch::new(workers));
        let workers = locals
            .into_iter()
            .enumerate()
            .map(|(index, local)| {
                let pool = pool.clone();
                let watch = watch.clone();
                std::thread::spawn(move || run_worker(pool, watch, index, local))
            })
            .collect();
        TestPool {
            pool,
            exited,
            next_id: AtomicU64::new(1),
            workers,
        }
    }

    pub(crate) fn service(&self, body: FakeBody) -> Arc<Service> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Service::new(
            id,
            id as u32,
            format!("test-{id}"),
            Box::new(body),
        ))
    }

    /// The id of the next service retired.
    pub(crate) fn next_exit(&self) -> u64 {
        self.exited
            .recv_timeout(HUNG)
            .expect("no service exited: hung")
    }
}

impl Drop for TestPool {
    fn drop(&mut self) {
        self.pool.stop();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// The test's side of [`FakeBody::held`].
pub(crate) struct Held {
    gate: Arc<Gate>,
    entered: mpsc::Receiver<()>,
}

impl Held {
    /// Returns once the body is waiting in its first turn.
    pub(crate) fn wait_entered(&self) {
        self.entered
            .recv_timeout(HUNG)
            .expect("the first turn never ran");
    }

    pub(crate) fn release(&self) {
        self.gate.open();
    }
}

/// A one-shot gate a body waits at until the test opens it.
struct Gate {
    open: mpsc::Sender<()>,
    wait: std::sync::Mutex<mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> Arc<Gate> {
        let (open, wait) = mpsc::channel();
        Arc::new(Gate {
            open,
            wait: std::sync::Mutex::new(wait),
        })
    }

    fn open(&self) {
        let _ = self.open.send(());
    }

    fn wait(&self) {
        self.wait
            .lock()
            .unwrap()
            .recv_timeout(HUNG)
            .expect("the gate was never opened: hung");
    }
}

/// A timer event carrying `id` (tests use it as a tagged, cheap event).
pub(crate) fn tagged(id: u64) -> Event {
    Event::Timer { id }
}

/// The tag of an event made by [`tagged`].
pub(crate) fn tag(event: &Event) -> u64 {
    match event {
        Event::Timer { id } => *id,
        other => panic!("expected a tagged event, got {other:?}"),
    }
}
