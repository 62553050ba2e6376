//! Parking and unparking of idle workers.
//!
//! Protocol (no lost wakeups):
//! 1. A worker with nothing to do first *searches*: it yield-spins for a
//!    short window, counted in `searching`, looking for work.
//! 2. Then it registers as a sleeper, checks every queue once more, and only
//!    then parks.
//! 3. Whoever queues work calls [`Idle::notify_one`] *after* the push. It does
//!    nothing while some worker is searching (that one will find the work);
//!    otherwise it unparks one sleeper.
//!
//! Step 2's re-check after registering pairs with step 3's check after the
//! push (both SeqCst): either the pusher sees the sleeper, or the sleeper sees
//! the work.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::Thread;

pub(crate) struct Idle {
    searching: AtomicUsize,
    num_sleepers: AtomicUsize,
    sleepers: Mutex<Vec<usize>>,
    /// Set by an unparker, cleared by the parked worker: tells a real
    /// unpark from a spurious wakeup.
    notified: Vec<AtomicBool>,
    threads: OnceLock<Vec<Thread>>,
}

impl Idle {
    pub(crate) fn new(workers: usize) -> Idle {
        Idle {
            searching: AtomicUsize::new(0),
            num_sleepers: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(workers)),
            notified: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            threads: OnceLock::new(),
        }
    }

    pub(crate) fn set_threads(&self, threads: Vec<Thread>) {
        let _ = self.threads.set(threads);
    }

    pub(crate) fn begin_search(&self) {
        self.searching.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn end_search(&self) {
        self.searching.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes one parked worker unless a worker is already searching.
    pub(crate) fn notify_one(&self) {
        if self.searching.load(Ordering::SeqCst) > 0
            || self.num_sleepers.load(Ordering::SeqCst) == 0
        {
            return;
        }
        self.wake_one();
    }

    #[inline(never)]
    fn wake_one(&self) {
        let index = {
            let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            let Some(index) = sleepers.pop() else { return };
            self.num_sleepers.fetch_sub(1, Ordering::SeqCst);
            index
        };
        self.notified[index].store(true, Ordering::SeqCst);
        if let Some(threads) = self.threads.get() {
            threads[index].unpark();
        }
    }

    /// Wakes every parked worker (shutdown).
    pub(crate) fn notify_all(&self) {
        while self.num_sleepers.load(Ordering::SeqCst) > 0 {
            self.wake_one();
        }
    }

    /// Step 2: registers `index` as a sleeper. The caller re-checks the
    /// queues, then calls [`Idle::park`] or [`Idle::cancel_sleep`].
    pub(crate) fn prepare_sleep(&self, index: usize) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
        sleepers.push(index);
        self.num_sleepers.fetch_add(1, Ordering::SeqCst);
    }

    /// Undoes [`Idle::prepare_sleep`] when the re-check found work. Returns
    /// false if a notifier already took this worker off the list (then the
    /// notification it meant for a sleeper must be passed on).
    pub(crate) fn cancel_sleep(&self, index: usize) {
        let removed = {
            let mut sleepers = self.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            match sleepers.iter().position(|&i| i == index) {
                Some(at) => {
                    sleepers.swap_remove(at);
                    self.num_sleepers.fetch_sub(1, Ordering::SeqCst);
                    true
                }
                None => false,
            }
        };
        if !removed {
            // A notifier picked us; we are awake anyway, so consume the flag.
            // We are about to run work, and the pusher's item is in a queue
            // we will drain, so nothing is lost.
            self.notified[index].store(false, Ordering::SeqCst);
        }
    }

    /// Parks until notified.
    pub(crate) fn park(&self, index: usize, shutdown: &AtomicBool) {
        while !self.notified[index].swap(false, Ordering::SeqCst) {
            if shutdown.load(Ordering::SeqCst) {
                return;
            }
            std::thread::park();
        }
    }
}
