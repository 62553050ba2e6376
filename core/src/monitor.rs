//! The monitor thread: finds slices that run too long.
//!
//! Protocol:
//! 1. Each worker publishes, per turn, the id of the service it runs, a turn
//!    counter and the turn's start time in its [`WorkerSlot`] (three relaxed
//!    stores; nothing else on the hot path).
//! 2. Every `TICK` the monitor reads the slots. A turn that has run past
//!    `slice_warn` is reported once through the service's [`Interrupt`]
//!    (which logs where it is, with a traceback); past `slice_kill` it is
//!    interrupted once (the Lua layer stops that coroutine with an error).
//! 3. No hook is installed in steady state: the interpreter runs at full
//!    speed until the monitor finds a stuck slice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{now_ms, Shared};

const TICK: Duration = Duration::from_millis(100);

/// What one worker is running now.
#[derive(Default)]
pub(crate) struct WorkerSlot {
    /// Service id, 0 when idle.
    service: AtomicU64,
    turn: AtomicU64,
    started_ms: AtomicU64,
}

impl WorkerSlot {
    /// `now` is the monitor's coarse clock: a turn's start needs no better
    /// than the monitor's tick, and reading the clock per turn is not free.
    #[inline]
    pub(crate) fn enter(&self, service: u64, now: u64) {
        self.started_ms.store(now, Ordering::Relaxed);
        self.turn.fetch_add(1, Ordering::Relaxed);
        self.service.store(service, Ordering::Release);
    }

    #[inline]
    pub(crate) fn leave(&self) {
        self.service.store(0, Ordering::Release);
    }
}

#[derive(Default, Clone, Copy)]
struct Seen {
    turn: u64,
    warned: bool,
    killed: bool,
}

pub(crate) fn run(shared: Arc<Shared>) {
    let warn_ms = shared.config.slice_warn.as_millis() as u64;
    let kill_ms = shared.config.slice_kill.as_millis() as u64;
    let mut seen = vec![Seen::default(); shared.slots.len()];
    while !shared.pool.shutdown.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        let now = now_ms();
        shared.coarse_ms.store(now, Ordering::Relaxed);
        for (index, slot) in shared.slots.iter().enumerate() {
            let id = slot.service.load(Ordering::Acquire);
            if id == 0 {
                continue;
            }
            let turn = slot.turn.load(Ordering::Relaxed);
            // The start was stamped with the coarse clock: at most one tick early.
            let running = now.saturating_sub(slot.started_ms.load(Ordering::Relaxed));
            let seen = &mut seen[index];
            if seen.turn != turn {
                *seen = Seen {
                    turn,
                    ..Seen::default()
                };
            }
            let warn_due = warn_ms > 0 && running >= warn_ms && !seen.warned;
            let kill_due = kill_ms > 0 && running >= kill_ms && !seen.killed;
            if !warn_due && !kill_due {
                continue;
            }
            let Some(service) = shared.service_by_id(id) else {
                continue;
            };
            if warn_due {
                seen.warned = true;
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
                if let Some(interrupt) = service.interrupt() {
                    interrupt.kill(&service, running);
                }
            }
        }
    }
}
