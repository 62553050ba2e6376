//! Parking and unparking of idle workers.
//!
//! A worker with nothing to run must neither spin for long (on two cores it
//! takes the core its peer needs) nor sleep through work queued for it (a
//! lost wakeup). Protocol:
//!
//! 1. A worker with nothing to do first *searches*: it counts itself in
//!    `state` ([`Idle::begin_search`]) and yield-spins for a short window
//!    looking for work, then leaves the count ([`Idle::end_search`]).
//! 2. It registers as a sleeper ([`Idle::prepare_sleep`]: its index and
//!    thread go on the list and `state` counts it), looks at every queue
//!    once more, and parks ([`Idle::park`]) only if that found nothing;
//!    otherwise it takes itself off the list ([`Idle::cancel_sleep`]).
//!    The worker that holds the driver (`mod.rs`, step 6) registers as the
//!    *driver sleeper* and sleeps in the driver's blocking poll instead of
//!    parking; when the poll returns, for whatever reason, it calls
//!    [`Idle::cancel_sleep`].
//! 3. Whoever queues work calls [`Idle::notify_one`] *after* the push. It does
//!    nothing while some worker is searching (that one looks again in step 2
//!    after it stops) or when no worker sleeps; otherwise it takes one
//!    sleeper off the list, sets its `notified` flag and unparks it: a
//!    parked one first (the driver sleeper keeps watching the sockets), the
//!    driver sleeper through the driver's wake (an eventfd write) when it
//!    is the only one.
//! 4. Why no wakeup is lost: every change of `state` and the notifier's read
//!    of it are read-modify-writes of that one word (the read is a
//!    `fetch_add(0)`, as tokio's `notify_should_wakeup`), so they fall in one
//!    order. If the notifier comes second, it sees the sleeper (or searcher)
//!    and wakes one (or leaves the work to it); if it comes first, the
//!    worker's later read-modify-write synchronizes with it, so the look in
//!    step 2 sees the push. Plain loads, even SeqCst ones, after a push that
//!    is a release store (a local deque's) let both sides miss each other:
//!    the loom model (`loom_idle.rs`) finds that lost wakeup.
//! 5. A worker's `notified` flag tells a real unpark from a spurious one. It
//!    lives under the list's lock (parking is the cold path): a worker that
//!    finds itself already taken off the list when it cancels clears the
//!    flag and runs the work it found; the notifier's push happened before
//!    that lock, so the worker's next look finds that work too.
//! 6. Shutdown: the pool sets its flag, then [`Idle::notify_all`] wakes every
//!    registered sleeper. A worker reads the flag after registering (step 2)
//!    and each time it wakes; step 4's argument covers the flag as well.

use std::sync::atomic::Ordering;

use super::sync::{thread, AtomicBool, AtomicUsize, Mutex, MutexGuard};

/// One searching worker in `state` (the low half counts them).
const SEARCHING_ONE: usize = 1;
/// One registered sleeper in `state` (the high half counts them).
const SLEEPER_ONE: usize = 1 << (usize::BITS / 2);
const SEARCHING_MASK: usize = SLEEPER_ONE - 1;

pub(crate) struct Idle {
    /// Searching workers (low half) and registered sleepers (high half):
    /// one word, so a notifier reads both with one read-modify-write.
    state: AtomicUsize,
    sleepers: Mutex<Sleepers>,
    wake_driver: WakeDriver,
}

/// How a registered sleeper is woken.
enum Sleeper {
    /// Parked: unpark its thread.
    Parked(thread::Thread),
    /// In the driver's blocking poll: wake the driver.
    Driver,
}

/// Wakes the driver's blocking poll from any thread (step 3).
pub(crate) type WakeDriver = Box<dyn Fn() + Send + Sync>;

struct Sleepers {
    /// Registered sleepers: worker index and how to wake it.
    registered: Vec<(usize, Sleeper)>,
    /// Per worker: set by an unparker, cleared by the worker (step 5).
    notified: Vec<bool>,
}

impl Idle {
    /// `wake_driver` wakes the driver sleeper (never called if no worker
    /// sleeps in a driver).
    pub(crate) fn new(workers: usize, wake_driver: WakeDriver) -> Idle {
        assert!(
            workers < SLEEPER_ONE,
            "{workers} workers do not fit the count"
        );
        Idle {
            state: AtomicUsize::new(0),
            sleepers: Mutex::new(Sleepers {
                registered: Vec::with_capacity(workers),
                notified: vec![false; workers],
            }),
            wake_driver,
        }
    }

    fn sleepers(&self) -> MutexGuard<'_, Sleepers> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1: counts a searching worker.
    pub(crate) fn begin_search(&self) {
        self.state.fetch_add(SEARCHING_ONE, Ordering::SeqCst);
    }

    /// Step 1: the worker stopped searching (it found work or will sleep).
    pub(crate) fn end_search(&self) {
        self.state.fetch_sub(SEARCHING_ONE, Ordering::SeqCst);
    }

    /// Step 3: wakes one parked worker unless a worker is searching. Call it
    /// after the push that made the work visible.
    pub(crate) fn notify_one(&self) {
        // A read-modify-write, not a load: see step 4.
        let state = self.state.fetch_add(0, Ordering::SeqCst);
        if state & SEARCHING_MASK != 0 || state < SLEEPER_ONE {
            return;
        }
        self.wake_one();
    }

    /// Takes one sleeper off the list (a parked one first) and wakes it;
    /// false if none was left.
    #[inline(never)]
    fn wake_one(&self) -> bool {
        let sleeper = {
            let mut sleepers = self.sleepers();
            let registered = &mut sleepers.registered;
            let at = registered
                .iter()
                .rposition(|(_, sleeper)| matches!(sleeper, Sleeper::Parked(_)))
                .or(registered.len().checked_sub(1));
            let Some(at) = at else {
                return false;
            };
            let (index, sleeper) = registered.swap_remove(at);
            self.state.fetch_sub(SLEEPER_ONE, Ordering::SeqCst);
            sleepers.notified[index] = true;
            sleeper
        };
        match sleeper {
            Sleeper::Parked(thread) => thread.unpark(),
            Sleeper::Driver => (self.wake_driver)(),
        }
        true
    }

    /// Step 6: wakes every registered worker (shutdown). Call it after
    /// setting the flag that [`Idle::park`] reads.
    pub(crate) fn notify_all(&self) {
        while self.state.fetch_add(0, Ordering::SeqCst) >= SLEEPER_ONE {
            if !self.wake_one() {
                break;
            }
        }
    }

    /// Step 2: registers worker `index`, on its own thread, as a sleeper
    /// (`in_driver`: the driver sleeper). The caller looks at the queues
    /// again, then calls [`Idle::park`] (or polls the driver) or
    /// [`Idle::cancel_sleep`].
    pub(crate) fn prepare_sleep(&self, index: usize, in_driver: bool) {
        let sleeper = if in_driver {
            Sleeper::Driver
        } else {
            Sleeper::Parked(thread::current())
        };
        let mut sleepers = self.sleepers();
        sleepers.registered.push((index, sleeper));
        self.state.fetch_add(SLEEPER_ONE, Ordering::SeqCst);
    }

    /// Step 2 and 5: undoes [`Idle::prepare_sleep`] when the second look
    /// found work, or once the driver's poll returned. If a notifier already
    /// took the worker off the list, its flag is cleared instead (the worker
    /// is awake and about to look for work).
    pub(crate) fn cancel_sleep(&self, index: usize) {
        let mut sleepers = self.sleepers();
        let registered = &mut sleepers.registered;
        match registered.iter().position(|(sleeper, _)| *sleeper == index) {
            Some(at) => {
                registered.swap_remove(at);
                self.state.fetch_sub(SLEEPER_ONE, Ordering::SeqCst);
            }
            None => sleepers.notified[index] = false,
        }
    }

    /// Parks the calling worker until it is notified or `shutdown` is set.
    pub(crate) fn park(&self, index: usize, shutdown: &AtomicBool) {
        loop {
            if std::mem::take(&mut self.sleepers().notified[index]) {
                return;
            }
            if shutdown.load(Ordering::SeqCst) {
                return;
            }
            thread::park();
        }
    }
}
