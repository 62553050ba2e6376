//! The monitor thread: finds slices that run too long.
//!
//! Protocol:
//! 1. Each worker publishes, per turn, the id of the service it runs, a turn
//!    counter and the turn's start time in its [`WorkerSlot`] of the
//!    [`Watch`] (three relaxed stores; nothing else on the hot path). The
//!    start time is the watch's coarse clock, which the monitor sets.
//! 2. Every `TICK` the monitor sets the coarse clock and reads the slots
//!    ([`Monitor::check`]). A turn that has run past `slice_warn` is reported
//!    once through the service's [`Interrupt`] (which logs where it is, with
//!    a traceback); past `slice_kill` it is interrupted once (the Lua layer
//!    stops that coroutine with an error). "Once" is per turn: a new turn,
//!    of the same service or another, starts with a clean record.
//! 3. No hook is installed in steady state: the interpreter runs at full
//!    speed until the monitor finds a stuck slice.
//! 4. [`Watch::stop`] ends the thread at its next tick.
//! 5. Each tick it also runs the hook given by [`Monitor::every_tick`]
//!    (the runtime's: the pool's driver watchdog, `scheduler/mod.rs`).
//!
//! [`Interrupt`]: crate::service::Interrupt

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::directory::Directory;
use crate::stats::{bump, WorkerSnapshot};

/// How often the monitor looks. A slice is reported at most one tick late,
/// and turn start times are stamped with a clock this coarse: 100 ms is far
/// below the 1 s and 5 s defaults of `slice_warn` and `slice_kill`, and ten
/// wakeups a second cost nothing.
const TICK: Duration = Duration::from_millis(100);

/// What one worker is running now, and its counters (`stats.rs`). Aligned
/// to its own cache lines: each worker writes its slot every turn.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct WorkerSlot {
    /// Service id, 0 when idle.
    service: AtomicU64,
    /// Turns so far (also tells the monitor one turn from the next).
    turn: AtomicU64,
    started_ms: AtomicU64,
    /// Time spent in turns, in nanoseconds.
    busy_ns: AtomicU64,
}

impl WorkerSlot {
    /// `now` is the watch's coarse clock: a turn's start needs no better
    /// than the monitor's tick, and reading the clock per turn is not free.
    #[inline]
    pub(crate) fn enter(&self, service: u64, now: u64) {
        self.started_ms.store(now, Ordering::Relaxed);
        self.turn.fetch_add(1, Ordering::Relaxed);
        self.service.store(service, Ordering::Release);
    }

    /// The turn ended after `busy`.
    #[inline]
    pub(crate) fn leave(&self, busy: Duration) {
        self.service.store(0, Ordering::Release);
        // One writer (this worker): no read-modify-write needed.
        let total = self.busy_ns.load(Ordering::Relaxed) + busy.as_nanos() as u64;
        self.busy_ns.store(total, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WorkerSnapshot {
        WorkerSnapshot {
            turns: self.turn.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
        }
    }
}

/// The monitor's part of the runtime: the workers write their slots and
/// read the coarse clock; the monitor does the reverse.
pub(crate) struct Watch {
    slots: Vec<WorkerSlot>,
    /// `now_ms()` as of the monitor's last tick.
    coarse_ms: AtomicU64,
    stopped: AtomicBool,
    /// Slices warned about and interrupted (the monitor writes them).
    warnings: AtomicU64,
    kills: AtomicU64,
}

impl Watch {
    pub(crate) fn new(workers: usize) -> Watch {
        Watch {
            slots: (0..workers).map(|_| WorkerSlot::default()).collect(),
            coarse_ms: AtomicU64::new(now_ms()),
            stopped: AtomicBool::new(false),
            warnings: AtomicU64::new(0),
            kills: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn slot(&self, worker: usize) -> &WorkerSlot {
        &self.slots[worker]
    }

    /// Each worker's turns and busy time.
    pub(crate) fn workers(&self) -> Vec<WorkerSnapshot> {
        self.slots.iter().map(WorkerSlot::snapshot).collect()
    }

    /// Slices warned about, and slices interrupted, so far.
    pub(crate) fn slice_reports(&self) -> (u64, u64) {
        (
            self.warnings.load(Ordering::Relaxed),
            self.kills.load(Ordering::Relaxed),
        )
    }

    #[inline]
    pub(crate) fn coarse_ms(&self) -> u64 {
        self.coarse_ms.load(Ordering::Relaxed)
    }

    /// Step 4.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// What the monitor last saw of one slot.
#[derive(Default, Clone, Copy)]
struct Seen {
    turn: u64,
    warned: bool,
    killed: bool,
}

pub(crate) struct Monitor {
    watch: Arc<Watch>,
    /// Where the ids in the slots are looked up.
    directory: Arc<Directory>,
    /// `slice_warn` and `slice_kill` in ms (0 = off).
    warn_ms: u64,
    kill_ms: u64,
    seen: Vec<Seen>,
    /// Step 5.
    on_tick: Option<Box<dyn Fn() + Send>>,
}

impl Monitor {
    pub(crate) fn new(
        watch: Arc<Watch>,
        directory: Arc<Directory>,
        slice_warn: Duration,
        slice_kill: Duration,
    ) -> Monitor {
        let seen = vec![Seen::default(); watch.slots.len()];
        Monitor {
            watch,
            directory,
            warn_ms: slice_warn.as_millis() as u64,
            kill_ms: slice_kill.as_millis() as u64,
            seen,
            on_tick: None,
        }
    }

    /// Step 5: runs `hook` every tick.
    pub(crate) fn every_tick(mut self, hook: Box<dyn Fn() + Send>) -> Monitor {
        self.on_tick = Some(hook);
        self
    }

    /// Body of the monitor thread.
    pub(crate) fn run(mut self) {
        while !self.watch.stopped.load(Ordering::Acquire) {
            std::thread::sleep(TICK);
            let now = now_ms();
            self.watch.coarse_ms.store(now, Ordering::Relaxed);
            self.check(now);
            if let Some(hook) = &self.on_tick {
                hook();
            }
        }
    }

    /// Step 2: warns about and interrupts the turns running at `now`.
    pub(crate) fn check(&mut self, now: u64) {
        for (slot, seen) in self.watch.slots.iter().zip(self.seen.iter_mut()) {
            let id = slot.service.load(Ordering::Acquire);
            if id == 0 {
                continue;
            }
            let turn = slot.turn.load(Ordering::Relaxed);
            // The start was stamped with the coarse clock: at most one tick early.
            let running = now.saturating_sub(slot.started_ms.load(Ordering::Relaxed));
            if seen.turn != turn {
                *seen = Seen {
                    turn,
                    ..Seen::default()
                };
            }
            let warn_due = self.warn_ms > 0 && running >= self.warn_ms && !seen.warned;
            let kill_due = self.kill_ms > 0 && running >= self.kill_ms && !seen.killed;
            if !warn_due && !kill_due {
                continue;
            }
            let Some(service) = self.directory.get(id) else {
                continue;
            };
            if warn_due {
                seen.warned = true;
                bump(&self.watch.warnings);
                match service.interrupt() {
                    Some(interrupt) => interrupt.warn(&service, running),
                    None => tracing::warn!(
                        service = id,
                        name = %service.name(),
                        "a slice has run for {running} ms"
                    ),
                }
            }
            if kill_due {
                seen.killed = true;
                bump(&self.watch.kills);
                if let Some(interrupt) = service.interrupt() {
                    interrupt.kill(&service, running);
                }
            }
        }
    }
}
