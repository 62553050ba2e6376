//! The work-stealing pool that runs services.
//!
//! One `crossbeam_deque::Injector` for work queued from outside the pool (the
//! reactor, the lane, the main thread) and one local deque per worker for work
//! queued by a worker (a service waking another). A worker pops its own deque,
//! then the injector (in batches), then steals half of a sibling's deque.
//!
//! Idle workers yield-spin for `spin` then park (see `idle.rs`); on two cores a
//! busy-spinning worker takes the core the peer needs, and a futex wakeup costs
//! more than a request (`shared/research/scheduling.md`).

mod idle;
mod worker;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_deque::{Injector, Stealer, Worker as LocalQueue};

use crate::service::Service;

pub(crate) use worker::run_worker;

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

pub(crate) struct Pool {
    pub(crate) injector: Injector<Arc<Service>>,
    pub(crate) stealers: Vec<Stealer<Arc<Service>>>,
    pub(crate) idle: idle::Idle,
    pub(crate) shutdown: AtomicBool,
}

impl Pool {
    /// Builds the pool; returns the local deques to hand to the workers.
    pub(crate) fn new(workers: usize) -> (Pool, Vec<LocalQueue<Arc<Service>>>) {
        let locals: Vec<_> = (0..workers).map(|_| LocalQueue::new_fifo()).collect();
        let stealers = locals.iter().map(|w| w.stealer()).collect();
        let pool = Pool {
            injector: Injector::new(),
            stealers,
            idle: idle::Idle::new(workers),
            shutdown: AtomicBool::new(false),
        };
        (pool, locals)
    }

    /// Queues a service that was just moved to SCHEDULED. On a worker it
    /// takes the LIFO slot (the service it displaces goes to the local deque,
    /// where siblings may steal it, so they are told); elsewhere (reactor,
    /// lane, main thread) it goes to the injector.
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

    pub(crate) fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.notify_all();
    }
}
