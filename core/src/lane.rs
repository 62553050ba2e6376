//! The blocking-task lane: a pool of threads for work that blocks (SQLite,
//! files, DNS), so no worker ever waits.
//!
//! Protocol:
//! 1. A service submits a task with a ticket. The queue is bounded: when it
//!    is full, [`Lane::submit`] hands the task back and records the service
//!    as a waiter; the service parks the task on the calling session (so
//!    memory stays bounded by sessions, and nothing is dropped).
//! 2. A lane thread runs the task and posts `Event::LaneDone { ticket,
//!    result }` to the service through the pool's one scheduling path
//!    (`Pool::post`). A task that panics yields a [`LanePanic`] result; the
//!    thread goes on.
//! 3. Each time a task leaves the queue, every waiting service is sent
//!    `Event::LaneSlot` so it can submit again (one that finds the queue
//!    full again re-registers). Waking them all, not one, matters: a waiter
//!    whose parked task timed out meanwhile would swallow the only notice
//!    and leave the others waiting.
//! 4. [`Lane::stop`] ends every lane thread at its next look at the queue
//!    (a running task is finished first); tasks still queued are not run.
//!
//! Lua never runs here: tasks are plain Rust closures.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use crate::event::Event;
use crate::scheduler::Pool;
use crate::service::Service;
use crate::stats::LaneSnapshot;

/// A blocking task; its result goes back to the service as `LaneDone`.
pub type Task = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

struct Job {
    service: Arc<Service>,
    ticket: u64,
    task: Task,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Services with tasks parked for a free slot (each at most once).
    waiters: VecDeque<Arc<Service>>,
    stopping: bool,
    /// Counted under this lock, which is held anyway (`stats.rs`): tasks
    /// handed back for a full queue, and tasks taken by a lane thread.
    waits: u64,
    taken: u64,
}

pub(crate) struct Lane {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
}

impl Lane {
    pub(crate) fn new(capacity: usize) -> Lane {
        Lane {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues a task, or gives it back when the queue is full (the service
    /// then gets `Event::LaneSlot` when a slot frees).
    pub(crate) fn submit(
        &self,
        service: &Arc<Service>,
        ticket: u64,
        task: Task,
    ) -> Result<(), Task> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.jobs.len() >= self.capacity {
            queue.waits += 1;
            if !queue.waiters.iter().any(|w| Arc::ptr_eq(w, service)) {
                queue.waiters.push_back(service.clone());
            }
            return Err(task);
        }
        queue.jobs.push_back(Job {
            service: service.clone(),
            ticket,
            task,
        });
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    /// The queue and its counters now.
    pub(crate) fn snapshot(&self) -> LaneSnapshot {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        LaneSnapshot {
            queued: queue.jobs.len(),
            waiting: queue.waiters.len(),
            waits: queue.waits,
            taken: queue.taken,
        }
    }

    pub(crate) fn stop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopping = true;
        self.ready.notify_all();
    }

    /// Body of one lane thread; results and slot notices go through `pool`.
    pub(crate) fn run(&self, pool: &Pool) {
        let lane = self;
        loop {
            let (job, waiters) = {
                let mut queue = lane.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if queue.stopping {
                        return;
                    }
                    if let Some(job) = queue.jobs.pop_front() {
                        queue.taken += 1;
                        let waiters = std::mem::take(&mut queue.waiters);
                        break (job, waiters);
                    }
                    queue = lane.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            for waiter in waiters {
                pool.post(&waiter, Event::LaneSlot);
            }
            let Job {
                service,
                ticket,
                task,
            } = job;
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)) {
                Ok(result) => result,
                Err(_) => {
                    tracing::error!(service = service.id(), "a lane task panicked");
                    Box::new(LanePanic) as Box<dyn Any + Send>
                }
            };
            pool.post(&service, Event::LaneDone { ticket, result });
        }
    }
}

/// The result of a task that panicked.
#[derive(Debug)]
pub struct LanePanic;
