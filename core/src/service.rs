//! A service: the unit the workers schedule and steal.
//!
//! A service owns a body (for lunet, one Lua VM) that must never run on two
//! threads at once, and a mailbox of [`Event`]s. Its run state is one atomic,
//! as in tokio's task state:
//!
//! 1. `IDLE`: not queued, not running. An event moves it to `SCHEDULED` and
//!    pushes it on a run queue (exactly once: the CAS decides who pushes).
//! 2. `SCHEDULED`: on a run queue. Further events only fill the mailbox.
//! 3. `RUNNING`: a worker owns the body. An event moves it to `NOTIFIED`
//!    instead of queueing it a second time.
//! 4. When the worker is done it tries `RUNNING -> IDLE`; if that fails the
//!    state was `NOTIFIED`, so it sets `SCHEDULED` and queues it again. The
//!    same happens when the budget ran out with events left.
//! 5. `DEAD`: the body exited (or panicked). The worker sets it under the
//!    mailbox lock and hands what was left to [`ServiceBody::bounce`]; later
//!    posts are refused, so nothing is queued behind a dead service.
//!
//! An event is always pushed to the mailbox *before* the state is touched, so
//! a worker that sees `NOTIFIED` (or a non-empty mailbox) never loses it.
//!
//! Killing (`Runtime::kill`) is a flag beside the state: a *closed* mailbox
//! refuses messages from other services as `Dead` at once, while runtime
//! events and the kill signal itself still arrive, so the body can exit
//! cleanly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::event::Event;
use crate::stats::ServiceStats;

pub(crate) const IDLE: u8 = 0;
pub(crate) const SCHEDULED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const NOTIFIED: u8 = 3;
/// The body has exited: events are dropped, the service is never queued again.
pub(crate) const DEAD: u8 = 4;

/// What a body reports after a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Keep the service; run it again when events arrive.
    Alive,
    /// The service is done: the body gets what is left in the mailbox
    /// ([`ServiceBody::bounce`]), then is dropped.
    Exited,
}

/// What runs inside a service. Implemented by the Lua layer.
pub trait ServiceBody: Send {
    /// Handles the events of one turn, in order. `events` holds at most the
    /// runtime's budget; the body should consume all of them.
    fn run(&mut self, service: &std::sync::Arc<Service>, events: &mut VecDeque<Event>) -> Status;

    /// The service has exited with these events still queued: answer what
    /// needs an answer (a call must not hang). Later posts fail at the sender.
    fn bounce(&mut self, _service: &std::sync::Arc<Service>, _events: VecDeque<Event>) {}
}

/// How the monitor reaches into a service whose slice runs too long. Called
/// from the monitor thread while a worker runs the service.
pub trait Interrupt: Send + Sync {
    /// The slice has run past `--slice-warn`: log where it is.
    fn warn(&self, service: &Service, running_ms: u64);
    /// The slice has run past `--slice-kill`: stop it with an error.
    fn kill(&self, service: &Service, running_ms: u64);
}

/// Why a message was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The service has exited, was killed, or never existed.
    #[error("dead")]
    Dead,
    /// The mailbox is at its hard cap.
    #[error("overloaded")]
    Overloaded,
}

/// A scheduled unit: run state, mailbox and body.
pub struct Service {
    /// Unique for the life of the process, never reused.
    id: u64,
    /// Index in the runtime's service table (reused after exit).
    index: u32,
    name: String,
    pub(crate) state: AtomicU8,
    pub(crate) mailbox: Mutex<VecDeque<Event>>,
    pub(crate) body: Mutex<Option<Box<dyn ServiceBody>>>,
    /// Mailbox length past which the next warning is logged (doubles).
    pub(crate) warn_at: AtomicUsize,
    /// Counters for the console and `/metrics` (see `stats.rs`).
    stats: ServiceStats,
    /// Accepted connections this service holds (the reactor hands new ones
    /// to the least-loaded host); kept by each connection's
    /// [`crate::event::ConnectionCount`].
    load: std::sync::Arc<AtomicUsize>,
    /// Hard cap on queued messages from other services (0 = none).
    mailbox_cap: AtomicUsize,
    /// Killed: messages from other services are refused as dead, while
    /// the body finishes exiting (see `Runtime::kill`).
    closed: std::sync::atomic::AtomicBool,
    interrupt: std::sync::OnceLock<std::sync::Arc<dyn Interrupt>>,
}

impl Service {
    pub(crate) fn new(id: u64, index: u32, name: String, body: Box<dyn ServiceBody>) -> Service {
        Service {
            id,
            index,
            name,
            state: AtomicU8::new(IDLE),
            mailbox: Mutex::new(VecDeque::new()),
            body: Mutex::new(Some(body)),
            warn_at: AtomicUsize::new(crate::MAILBOX_WARN_FIRST),
            stats: ServiceStats::default(),
            load: std::sync::Arc::new(AtomicUsize::new(0)),
            mailbox_cap: AtomicUsize::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            interrupt: std::sync::OnceLock::new(),
        }
    }

    /// The service's unique id (its handle for the layer above).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The index used in socket tokens.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The name given at spawn (for logs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters (see `stats.rs`).
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Events waiting in its mailbox (takes the mailbox lock: not for the
    /// hot path).
    pub fn mailbox_len(&self) -> usize {
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Accepted connections this service holds.
    pub fn load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    pub(crate) fn load_counter(&self) -> std::sync::Arc<AtomicUsize> {
        self.load.clone()
    }

    /// Sets a hard cap on messages queued by `Runtime::post_message` (0 = none).
    pub fn set_mailbox_cap(&self, cap: usize) {
        self.mailbox_cap.store(cap, Ordering::Relaxed);
    }

    /// Refuses further messages from other services (`Runtime::kill`; a
    /// body that exits on its own, before it lets go of what it holds, so
    /// that no one reaches it once they could see it go).
    pub fn close_mailbox(&self) {
        let _mailbox = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Release);
    }

    /// Killed or exited: messages from other services are refused.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.state.load(Ordering::Acquire) == DEAD
    }

    /// Installs how the monitor interrupts this service (once).
    pub fn set_interrupt(&self, interrupt: std::sync::Arc<dyn Interrupt>) {
        let _ = self.interrupt.set(interrupt);
    }

    pub(crate) fn interrupt(&self) -> Option<&std::sync::Arc<dyn Interrupt>> {
        self.interrupt.get()
    }

    /// Pushes an event; `Ok(true)` when the caller must queue the service
    /// (it went from IDLE to SCHEDULED). A dead service refuses the event,
    /// and so does a killed one or a full mailbox when `bounded` (a message
    /// from another service): it comes back with the reason.
    pub(crate) fn push(&self, event: Event, bounded: bool) -> Result<bool, (Event, PostError)> {
        let len = {
            let mut mailbox = self.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            if self.state.load(Ordering::Acquire) == DEAD {
                return Err((event, PostError::Dead));
            }
            if bounded && self.closed.load(Ordering::Acquire) {
                return Err((event, PostError::Dead));
            }
            if bounded {
                let cap = self.mailbox_cap.load(Ordering::Relaxed);
                if cap > 0 && mailbox.len() >= cap {
                    return Err((event, PostError::Overloaded));
                }
            }
            if matches!(event, Event::Message(_)) {
                self.stats.add_queued();
            }
            mailbox.push_back(event);
            mailbox.len()
        };
        if len >= self.warn_at.load(Ordering::Relaxed) {
            self.warn_mailbox(len);
        }
        Ok(self.transition_to_scheduled())
    }

    #[inline(never)]
    fn warn_mailbox(&self, len: usize) {
        let at = self.warn_at.load(Ordering::Relaxed);
        if len >= at
            && self
                .warn_at
                .compare_exchange(
                    at,
                    at.saturating_mul(2),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                service = self.id,
                name = %self.name(),
                queued = len,
                "mailbox is long: {len} events queued"
            );
        }
    }

    /// IDLE -> SCHEDULED (true: caller queues it); RUNNING -> NOTIFIED.
    pub(crate) fn transition_to_scheduled(&self) -> bool {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let next = match current {
                IDLE => SCHEDULED,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return next == SCHEDULED,
                Err(actual) => current = actual,
            }
        }
    }
}
