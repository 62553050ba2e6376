//! One worker thread: find a service, run one turn of it, repeat.
//!
//! A turn (`run_turn`), against the state machine of `service.rs`:
//! 1. SCHEDULED -> RUNNING; a service that is not SCHEDULED is dead and is
//!    dropped from the queue.
//! 2. Take at most `budget` events from the mailbox, publish the turn to the
//!    monitor, run the body on them (a panic stops the service, not the
//!    worker), clear the slot, and add the turn to the service's and the
//!    worker's counters (`stats.rs`).
//! 3. The body exited: retire the service (DEAD, leftovers to `bounce`,
//!    then the pool's `on_exit`). Events left past the budget: back to
//!    SCHEDULED, at the back of the injector. Otherwise RUNNING -> IDLE; if
//!    that fails an event came during the turn (NOTIFIED), so the service
//!    is queued again.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Worker as LocalQueue};

use super::{take_lifo, Pool, LOCAL};
use crate::event::Event;
use crate::monitor::Watch;
use crate::service::{Service, Status, DEAD, IDLE, NOTIFIED, RUNNING, SCHEDULED};

/// Turns a worker runs in a row, finding work each time, before it polls
/// the driver without blocking (`mod.rs`, step 6): sockets and timers are
/// served even when no worker is ever idle. tokio's `event_interval`.
const POLL_INTERVAL: u32 = 61;

/// Body of worker thread `index`. `watch` is where it publishes its turns
/// to the monitor.
pub(crate) fn run_worker(
    pool: Arc<Pool>,
    watch: Arc<Watch>,
    index: usize,
    local: LocalQueue<Arc<Service>>,
) {
    LOCAL.with(|slot| *slot.borrow_mut() = Some(local));
    let pool = &*pool;
    let spin = pool.settings.spin;
    let mut batch: VecDeque<Event> = VecDeque::new();
    let mut turns: u32 = 0;
    'outer: loop {
        if pool.shutdown.load(Ordering::Acquire) {
            break;
        }
        if let Some(service) = find_work(pool, index) {
            run_turn(pool, &watch, index, service, &mut batch);
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(POLL_INTERVAL) {
                pool.poll_now();
            }
            continue;
        }
        // Nothing queued: what the sockets hold now is the likeliest work.
        if pool.poll_now() {
            continue;
        }
        // Search: yield-spin for a short window, looking at the queues and
        // the driver, before sleeping.
        pool.idle.begin_search();
        let started = Instant::now();
        while started.elapsed() < spin {
            std::thread::yield_now();
            let found = find_work(pool, index)
                .or_else(|| pool.poll_now().then(|| find_work(pool, index)).flatten());
            if let Some(service) = found {
                pool.idle.end_search();
                wake_for_the_rest(pool);
                run_turn(pool, &watch, index, service, &mut batch);
                continue 'outer;
            }
        }
        pool.idle.end_search();
        // Sleep: in the driver's blocking poll if no other worker runs it,
        // parked otherwise.
        let driver = pool.try_driver();
        pool.idle.prepare_sleep(index, driver.is_some());
        if let Some(service) = find_work(pool, index) {
            pool.idle.cancel_sleep(index);
            drop(driver);
            run_turn(pool, &watch, index, service, &mut batch);
            continue;
        }
        if pool.shutdown.load(Ordering::Acquire) {
            pool.idle.cancel_sleep(index);
            break;
        }
        match driver {
            Some(mut driver) => {
                driver.poll(true);
                // Off the list before posting: a notification of what this
                // worker posts must not come back to it.
                pool.idle.cancel_sleep(index);
                driver.dispatch(pool);
            }
            None => pool.idle.park(index, &pool.shutdown),
        }
    }
    LOCAL.with(|slot| *slot.borrow_mut() = None);
    drop(take_lifo());
}

/// A searcher that found work: while it searched, pushes did not wake
/// anyone (`idle.rs`, step 3), so if work is left in its deque or the
/// injector, a sleeper is woken for it.
fn wake_for_the_rest(pool: &Pool) {
    let local_left = LOCAL.with(|slot| {
        slot.borrow()
            .as_ref()
            .is_some_and(|queue| !queue.is_empty())
    });
    if local_left || !pool.injector.is_empty() {
        pool.idle.notify_one();
    }
}

/// Turns in a row a worker may take from its LIFO slot before it looks at
/// its deque and the injector: two services that keep messaging each other
/// must not starve the rest (tokio uses the same cap).
const LIFO_CAP: u32 = 3;

thread_local! {
    static LIFO_RUNS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn find_work(pool: &Pool, index: usize) -> Option<Arc<Service>> {
    let runs = LIFO_RUNS.with(|r| r.get());
    if runs < LIFO_CAP {
        if let Some(service) = take_lifo() {
            LIFO_RUNS.with(|r| r.set(runs + 1));
            return Some(service);
        }
    }
    LIFO_RUNS.with(|r| r.set(0));
    let local_pop = LOCAL.with(|slot| slot.borrow().as_ref().and_then(|queue| queue.pop()));
    if local_pop.is_some() {
        return local_pop;
    }
    let stolen = steal(pool, index);
    if stolen.is_some() {
        return stolen;
    }
    take_lifo()
}

fn steal(pool: &Pool, index: usize) -> Option<Arc<Service>> {
    loop {
        let mut retry = false;
        let stolen = LOCAL.with(|slot| {
            let slot = slot.borrow();
            let queue = slot.as_ref()?;
            match pool.injector.steal_batch_and_pop(queue) {
                Steal::Success(service) => return Some(service),
                Steal::Retry => retry = true,
                Steal::Empty => {}
            }
            let count = pool.stealers.len();
            for offset in 1..count {
                let victim = &pool.stealers[(index + offset) % count];
                match victim.steal_batch_and_pop(queue) {
                    Steal::Success(service) => return Some(service),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            None
        });
        if stolen.is_some() || !retry {
            return stolen;
        }
    }
}

/// One turn: take up to `budget` events, run the body, then decide whether
/// the service goes idle or back on a queue (see `service.rs`).
fn run_turn(
    pool: &Pool,
    watch: &Watch,
    worker: usize,
    service: Arc<Service>,
    batch: &mut VecDeque<Event>,
) {
    let budget = pool.settings.budget;
    if service
        .state
        .compare_exchange(SCHEDULED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return; // dead
    }
    let more_left = {
        let mut mailbox = service.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        if mailbox.len() <= budget {
            std::mem::swap(&mut *mailbox, batch);
            false
        } else {
            batch.extend(mailbox.drain(..budget));
            true
        }
    };
    // Counted before the body consumes the batch (see `stats.rs`).
    let events = batch.len();
    let messages = batch
        .iter()
        .filter(|event| matches!(event, Event::Message(_)))
        .count();
    let slot = watch.slot(worker);
    slot.enter(service.id(), watch.coarse_ms());
    let started = pool.settings.time_turns.then(Instant::now);
    let status = {
        let mut body = service.body.lock().unwrap_or_else(|e| e.into_inner());
        match body.as_mut() {
            Some(body) => match catch_unwind(AssertUnwindSafe(|| body.run(&service, batch))) {
                Ok(status) => status,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    tracing::error!(
                        service = service.id(),
                        name = %service.name(),
                        "service panicked and was stopped: {what}"
                    );
                    Status::Exited
                }
            },
            None => Status::Exited,
        }
    };
    let busy = started.map_or(Duration::ZERO, |started| started.elapsed());
    slot.leave(busy);
    service.stats().add_turn(events, messages, busy);
    batch.clear();
    if status == Status::Exited {
        retire(pool, &service);
        return;
    }
    if more_left {
        service.state.store(SCHEDULED, Ordering::Release);
        // Behind everyone else: a busy service must not starve the others.
        pool.injector.push(service);
        pool.idle.notify_one();
        return;
    }
    if service
        .state
        .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        debug_assert_eq!(service.state.load(Ordering::Acquire), NOTIFIED);
        service.state.store(SCHEDULED, Ordering::Release);
        pool.schedule(service);
    }
}

#[inline(never)]
fn retire(pool: &Pool, service: &Arc<Service>) {
    let leftover = {
        let mut mailbox = service.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        service.state.store(DEAD, Ordering::Release);
        std::mem::take(&mut *mailbox)
    };
    let body = service
        .body
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(mut body) = body {
        let _ = catch_unwind(AssertUnwindSafe(|| body.bounce(service, leftover)));
        drop(body);
    }
    pool.exited(service);
}
