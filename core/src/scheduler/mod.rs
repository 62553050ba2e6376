//! The work-stealing pool that runs services, and the one path that
//! schedules them ([`Pool::post`]).
//!
//! Queues: one `crossbeam_deque::Injector` for work queued from outside the
//! pool (the reactor, the lane, the main thread), one local deque per worker
//! for work queued by a worker (a service waking another), and a LIFO slot
//! per worker (below).
//!
//! Protocol:
//! 1. [`Pool::post`] pushes the event to the service's mailbox, then moves
//!    the service's state (see `service.rs`); only the poster that moved it
//!    from IDLE to SCHEDULED queues it ([`Pool::schedule`]), so a service
//!    is on at most one queue.
//! 2. On a worker, the service takes the LIFO slot; the one it displaces
//!    goes to the local deque, where siblings may steal it, so one is
//!    notified. Off a worker it goes to the injector, and one is notified.
//! 3. A worker pops its LIFO slot (at most `LIFO_CAP` turns in a row), then
//!    its deque, then the injector (in batches), then steals half of a
//!    sibling's deque (`worker.rs`), and runs one turn of what it found.
//! 4. Idle workers yield-spin for `spin`, then park (`idle.rs`): on two cores
//!    a busy-spinning worker takes the core the peer needs, and a futex
//!    wakeup costs more than a request (`shared/research/scheduling.md`).
//! 5. A service whose body exits is retired by the worker that ran it, which
//!    then calls the pool's `on_exit` (the runtime removes it from the
//!    directory and the reactor): the pool knows neither.
//! 6. There is no reactor thread: the [`Driver`] (the reactor's poll, its
//!    listeners and timers, `reactor.rs`) is run by whichever worker is
//!    idle, as tokio's workers take turns at its I/O driver. An idle worker
//!    polls it without blocking while it searches; the worker that goes to
//!    sleep holding it sleeps in its blocking poll (the driver sleeper of
//!    `idle.rs`), the others park. What a poll finds is posted from that
//!    worker, so the first service it wakes runs on it (the LIFO slot) with
//!    no hand-off at all, and the rest go to its deque for siblings to
//!    steal. A worker that keeps finding work polls the driver without
//!    blocking every `POLL_INTERVAL` turns (`worker.rs`), so sockets and
//!    timers are served even when no worker is ever idle. One case is
//!    left: every worker that is awake runs a long turn (a slice that
//!    computes for a second) while the others are parked, not in the
//!    driver. The monitor thread covers it: each tick it calls
//!    [`Pool::watch_driver`], which wakes a parked worker (it will take
//!    the driver) if nobody polled it during the tick and nobody holds it.

mod idle;
mod sync;
mod worker;

#[cfg(all(test, loom))]
mod loom_idle;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer, Worker as LocalQueue};

use crate::event::Event;
use crate::service::{PostError, Service};

pub(crate) use idle::WakeDriver;
pub(crate) use worker::run_worker;

/// What polls for I/O and timers: the reactor (`reactor.rs`), run by idle
/// workers in turn (step 6).
pub(crate) trait Driver: Send {
    /// Applies queued commands and polls once: without blocking, or
    /// (`block`) until readiness, the next timer's deadline or a wake.
    fn poll(&mut self, block: bool);
    /// Posts what the last poll found (readiness, accepted connections,
    /// expired timers) through `pool`; true if it posted anything.
    fn dispatch(&mut self, pool: &Pool) -> bool;
}

thread_local! {
    /// The local deque of the worker running on this thread, if any.
    static LOCAL: RefCell<Option<LocalQueue<Arc<Service>>>> = const { RefCell::new(None) };
    /// The service a worker scheduled last (tokio's LIFO slot): a service
    /// that sends to another and waits for the answer hands the worker over
    /// directly, with no wakeup and no steal by another core. Not stealable;
    /// see `worker::find_work` for the cap that keeps it fair.
    static LIFO: RefCell<Option<Arc<Service>>> = const { RefCell::new(None) };
}

pub(crate) fn take_lifo() -> Option<Arc<Service>> {
    LIFO.with(|lifo| lifo.borrow_mut().take())
}

/// Called on the worker that retired a service, after its body is gone.
pub(crate) type OnExit = Box<dyn Fn(&Arc<Service>) + Send + Sync>;

/// How the workers run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Events a service handles per turn (see `Config::budget`).
    pub(crate) budget: usize,
    /// How long an idle worker searches before it parks.
    pub(crate) spin: Duration,
    /// Measure each turn's wall time (see `Config::time_turns`).
    pub(crate) time_turns: bool,
}

pub(crate) struct Pool {
    pub(crate) injector: Injector<Arc<Service>>,
    pub(crate) stealers: Vec<Stealer<Arc<Service>>>,
    pub(crate) idle: idle::Idle,
    /// Read by parked workers through `idle.rs`, hence its type.
    pub(crate) shutdown: sync::AtomicBool,
    pub(crate) settings: Settings,
    on_exit: OnExit,
    /// Step 6: run by one worker at a time (`None` in tests without I/O).
    driver: Option<Mutex<Box<dyn Driver>>>,
    /// Polls of the driver so far, and as of the watchdog's last look.
    polls: AtomicU64,
    polls_seen: AtomicU64,
}

impl Pool {
    /// Builds the pool without a driver (tests of the scheduler alone);
    /// returns the local deques to hand to the workers.
    #[cfg(test)]
    pub(crate) fn new(
        workers: usize,
        settings: Settings,
        on_exit: OnExit,
    ) -> (Pool, Vec<LocalQueue<Arc<Service>>>) {
        Self::build(workers, settings, on_exit, None, Box::new(|| {}))
    }

    /// Builds the pool whose idle workers run `driver` (step 6);
    /// `wake_driver` wakes its blocking poll from any thread.
    pub(crate) fn with_driver(
        workers: usize,
        settings: Settings,
        on_exit: OnExit,
        driver: Box<dyn Driver>,
        wake_driver: WakeDriver,
    ) -> (Pool, Vec<LocalQueue<Arc<Service>>>) {
        Self::build(workers, settings, on_exit, Some(driver), wake_driver)
    }

    fn build(
        workers: usize,
        settings: Settings,
        on_exit: OnExit,
        driver: Option<Box<dyn Driver>>,
        wake_driver: WakeDriver,
    ) -> (Pool, Vec<LocalQueue<Arc<Service>>>) {
        let locals: Vec<_> = (0..workers).map(|_| LocalQueue::new_fifo()).collect();
        let stealers = locals.iter().map(|w| w.stealer()).collect();
        let pool = Pool {
            injector: Injector::new(),
            stealers,
            idle: idle::Idle::new(workers, wake_driver),
            shutdown: sync::AtomicBool::new(false),
            settings,
            on_exit,
            driver: driver.map(Mutex::new),
            polls: AtomicU64::new(0),
            polls_seen: AtomicU64::new(0),
        };
        (pool, locals)
    }

    /// The driver, if no other worker runs it now.
    pub(crate) fn try_driver(&self) -> Option<std::sync::MutexGuard<'_, Box<dyn Driver>>> {
        // A single writer at a time (the holder of the lock): no
        // read-modify-write needed.
        let polls = &self.polls;
        let count = |driver| {
            polls.store(polls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            Some(driver)
        };
        match self.driver.as_ref()?.try_lock() {
            Ok(driver) => count(driver),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => count(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Step 6's watchdog (the monitor calls it every tick): wakes a parked
    /// worker if the driver was neither polled since the last call nor is
    /// held now.
    pub(crate) fn watch_driver(&self) {
        let Some(driver) = self.driver.as_ref() else {
            return;
        };
        let polls = self.polls.load(Ordering::Relaxed);
        if self.polls_seen.swap(polls, Ordering::Relaxed) != polls {
            return;
        }
        let free = matches!(
            driver.try_lock(),
            Ok(_) | Err(std::sync::TryLockError::Poisoned(_))
        );
        if free {
            self.idle.notify_one();
        }
    }

    /// Polls the driver without blocking, if no other worker runs it, and
    /// posts what it found; true if that was anything.
    pub(crate) fn poll_now(&self) -> bool {
        match self.try_driver() {
            Some(mut driver) => {
                driver.poll(false);
                driver.dispatch(self)
            }
            None => false,
        }
    }

    /// Step 1: pushes an event to a service's mailbox and queues the service
    /// if it was idle. False if the service is dead (the event is dropped).
    pub(crate) fn post(&self, service: &Arc<Service>, event: Event) -> bool {
        self.post_checked(service, event, false).is_ok()
    }

    /// [`Pool::post`] that gives a refused event back. `bounded`: a message
    /// from another service, refused when the service is killed or its
    /// mailbox is at its cap.
    pub(crate) fn post_checked(
        &self,
        service: &Arc<Service>,
        event: Event,
        bounded: bool,
    ) -> Result<(), (Event, PostError)> {
        if service.push(event, bounded)? {
            self.schedule(service.clone());
        }
        Ok(())
    }

    /// Step 2: queues a service that was just moved to SCHEDULED.
    pub(crate) fn schedule(&self, service: Arc<Service>) {
        let on_worker =
            LOCAL.with(|local| local.try_borrow().map(|l| l.is_some()).unwrap_or(false));
        if !on_worker {
            self.injector.push(service);
            self.idle.notify_one();
            return;
        }
        let displaced = LIFO.with(|lifo| lifo.borrow_mut().replace(service));
        if let Some(displaced) = displaced {
            LOCAL.with(|local| {
                if let Some(queue) = local.borrow().as_ref() {
                    queue.push(displaced);
                }
            });
            self.idle.notify_one();
        }
    }

    /// Step 5.
    pub(crate) fn exited(&self, service: &Arc<Service>) {
        (self.on_exit)(service);
    }

    /// Stops the workers; each finishes the turn it is in.
    pub(crate) fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.notify_all();
    }
}
