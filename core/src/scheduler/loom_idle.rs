//! Model check of the parking protocol (`idle.rs`) with loom: every
//! interleaving, up to a preemption bound, of workers that search, register
//! as sleepers, look again and park (the loop of `worker.rs`), and pushers
//! that push one item each and then notify. With `driver`, the worker that
//! takes the driver first sleeps as the driver sleeper (woken through the
//! driver's wake, and taking itself off the list once woken), as
//! `worker.rs` does around the driver's blocking poll. A lost wakeup shows as a
//! deadlock that loom reports (every worker parked, an item left, the main
//! thread joining them); the end also checks that every item was taken once.
//!
//! Run (release: loom explores tens of thousands of interleavings):
//! `RUSTFLAGS="--cfg loom" cargo test -p lunet-core --release --lib loom`

use std::sync::atomic::Ordering;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::idle::Idle;

/// The run queues, no stronger than crossbeam's: a push is a release store
/// (a local deque's `push`), and a worker first checks for work with a plain
/// load, then claims it (a steal's emptiness check, then its CAS).
struct Queue {
    /// One slot per pusher.
    items: Vec<AtomicBool>,
}

impl Queue {
    fn push(&self, pusher: usize) {
        self.items[pusher].store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.items.iter().any(|item| {
            item.load(Ordering::Acquire)
                && item
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
    }
}

struct World {
    idle: Idle,
    queue: Queue,
    shutdown: AtomicBool,
    taken: AtomicUsize,
    /// Held by the worker that sleeps in the driver (`None`: no driver).
    driver: Option<Mutex<()>>,
    /// That worker's thread, which the driver's wake unparks.
    driver_thread: Arc<Mutex<Option<thread::Thread>>>,
}

impl World {
    fn new(workers: usize, pushers: usize, driver: bool) -> World {
        let driver_thread: Arc<Mutex<Option<thread::Thread>>> = Arc::new(Mutex::new(None));
        let wake = driver_thread.clone();
        World {
            driver: driver.then(|| Mutex::new(())),
            driver_thread,
            idle: Idle::new(
                workers,
                Box::new(move || {
                    if let Some(thread) = wake.lock().unwrap().as_ref() {
                        thread.unpark();
                    }
                }),
            ),
            queue: Queue {
                items: (0..pushers).map(|_| AtomicBool::new(false)).collect(),
            },
            shutdown: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
        }
    }

    /// Runs an item; the worker that runs the last one stops the pool as
    /// `Pool::stop` does (flag, then wake every sleeper).
    fn run_item(&self) {
        let taken = self.taken.fetch_add(1, Ordering::AcqRel) + 1;
        if taken == self.queue.items.len() {
            self.shutdown.store(true, Ordering::SeqCst);
            self.idle.notify_all();
        }
    }

    /// `worker.rs`'s loop, with one look while searching.
    fn worker(&self, index: usize, search: bool) {
        loop {
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            if self.queue.take() {
                self.run_item();
                continue;
            }
            if search {
                self.idle.begin_search();
                let found = self.queue.take();
                self.idle.end_search();
                if found {
                    self.run_item();
                    continue;
                }
            }
            let driver = self
                .driver
                .as_ref()
                .and_then(|driver| driver.try_lock().ok());
            if driver.is_some() {
                *self.driver_thread.lock().unwrap() = Some(thread::current());
            }
            self.idle.prepare_sleep(index, driver.is_some());
            if self.queue.take() {
                self.idle.cancel_sleep(index);
                self.run_item();
                continue;
            }
            if self.shutdown.load(Ordering::Acquire) {
                self.idle.cancel_sleep(index);
                return;
            }
            match driver {
                // The driver's blocking poll: it returns when woken (or
                // spuriously); the worker then takes itself off the list.
                Some(_held) => {
                    thread::park();
                    self.idle.cancel_sleep(index);
                }
                None => self.idle.park(index, &self.shutdown),
            }
        }
    }
}

fn check(workers: usize, pushers: usize, search: bool, preemption_bound: usize) {
    check_with(workers, pushers, search, false, preemption_bound);
}

fn check_with(workers: usize, pushers: usize, search: bool, driver: bool, preemption_bound: usize) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemption_bound);
    builder.check(move || {
        let world = Arc::new(World::new(workers, pushers, driver));
        let mut threads = Vec::new();
        for index in 0..workers {
            let world = world.clone();
            threads.push(thread::spawn(move || world.worker(index, search)));
        }
        for pusher in 0..pushers {
            let world = world.clone();
            threads.push(thread::spawn(move || {
                world.queue.push(pusher);
                world.idle.notify_one();
            }));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(world.taken.load(Ordering::Acquire), pushers);
    });
}

#[test]
fn loom_one_worker_one_pusher() {
    check(1, 1, true, 4);
}

#[test]
fn loom_two_workers_one_pusher_searching() {
    check(2, 1, true, 3);
}

#[test]
fn loom_two_workers_one_pusher_no_search() {
    check(2, 1, false, 3);
}

#[test]
fn loom_one_worker_two_pushers() {
    check(1, 2, true, 3);
}

#[test]
fn loom_two_workers_two_pushers() {
    check(2, 2, false, 2);
}

#[test]
fn loom_one_worker_in_the_driver_one_pusher() {
    check_with(1, 1, true, true, 4);
}

#[test]
fn loom_two_workers_one_in_the_driver_one_pusher() {
    check_with(2, 1, false, true, 3);
}

#[test]
fn loom_one_worker_in_the_driver_two_pushers() {
    check_with(1, 2, true, true, 3);
}
