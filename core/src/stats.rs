//! The numbers the console and `/metrics` show, and how they are kept.
//!
//! Protocol (no lock and no allocation on the hot path):
//! 1. Each counter has one writer at a time, and that writer already owns
//!    the cache line or the lock it needs:
//!    - a service's counters ([`ServiceStats`], on its `Service`) are added
//!      by the worker that ran its turn, once per turn, after the body
//!      returned: events and messages handled, turns, busy time. Turns of
//!      one service never overlap (the state machine of `service.rs`), so
//!      relaxed atomics suffice.
//!    - the body publishes what only it knows at the end of its turn
//!      ([`ServiceStats::publish`]: a Lua VM's memory and live sessions).
//!    - messages queued to a service are counted by the push, under the
//!      mailbox lock it holds anyway.
//!    - a worker's turns and busy time live in its slot of the monitor's
//!      watch, beside the monitor's count of warnings and kills; the
//!      reactor counts accepts and refusals ([`Accepts`]); the lane counts
//!      its waits and tasks under the queue lock it holds anyway.
//! 2. Readers (the console, `/metrics`) build a [`Snapshot`] on demand: they
//!    walk the directory and lock each mailbox to read its length. The
//!    cold path pays; the hot path does not.
//! 3. Counters outlive their service: when one exits, its totals are added
//!    to the directory's retired totals under the directory's lock, and a
//!    snapshot sums live services and retired totals under that same lock,
//!    so a total never goes backwards.
//!
//! Busy time is wall time between the start and the end of a turn (two
//! monotonic clock reads per turn, through the vDSO), measured only when
//! `Config::time_turns` asks for it (`lunet` does with `--admin`); time the
//! OS took the thread away is included.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Counters of one service (step 1).
#[derive(Default)]
pub struct ServiceStats {
    turns: AtomicU64,
    events: AtomicU64,
    messages_handled: AtomicU64,
    messages_queued: AtomicU64,
    busy_ns: AtomicU64,
    memory: AtomicUsize,
    sessions: AtomicUsize,
}

impl ServiceStats {
    /// A turn that handled `events`, `messages` of them messages, in `busy`.
    #[inline]
    pub(crate) fn add_turn(&self, events: usize, messages: usize, busy: Duration) {
        self.turns.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        if messages > 0 {
            self.messages_handled
                .fetch_add(messages as u64, Ordering::Relaxed);
        }
        self.busy_ns
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A message was queued in the mailbox (called under its lock).
    #[inline]
    pub(crate) fn add_queued(&self) {
        self.messages_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// What the body knows of itself, published at the end of its turn: the
    /// memory its VM uses and its live sessions.
    #[inline]
    pub fn publish(&self, memory: usize, sessions: usize) {
        self.memory.store(memory, Ordering::Relaxed);
        self.sessions.store(sessions, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            turns: self.turns.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            messages_handled: self.messages_handled.load(Ordering::Relaxed),
            messages_queued: self.messages_queued.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }

    pub fn memory(&self) -> usize {
        self.memory.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }
}

/// The counters of services that only grow (step 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub turns: u64,
    pub events: u64,
    pub messages_handled: u64,
    pub messages_queued: u64,
    pub busy_ns: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, other: Totals) {
        self.turns += other.turns;
        self.events += other.events;
        self.messages_handled += other.messages_handled;
        self.messages_queued += other.messages_queued;
        self.busy_ns += other.busy_ns;
    }
}

/// The reactor's counters (step 1): it is their only writer.
#[derive(Default)]
pub(crate) struct Accepts {
    pub(crate) accepted: AtomicU64,
    /// Closed at once for `max_conns`.
    pub(crate) refused: AtomicU64,
}

/// Adds one to a counter that has a single writer.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// One service as the console lists it.
#[derive(Clone, Debug)]
pub struct ServiceSnapshot {
    pub id: u64,
    pub name: String,
    /// Events waiting in its mailbox.
    pub mailbox: usize,
    /// Accepted connections it holds.
    pub connections: usize,
    /// Bytes its VM uses, as of its last turn.
    pub memory: usize,
    /// Live sessions, as of its last turn.
    pub sessions: usize,
    pub totals: Totals,
}

/// The lane's queue and counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneSnapshot {
    /// Tasks queued, not yet taken by a lane thread.
    pub queued: usize,
    /// Services waiting for a free slot.
    pub waiting: usize,
    /// Times a task found the queue full and had to wait.
    pub waits: u64,
    /// Tasks a lane thread has taken to run.
    pub taken: u64,
}

/// One worker thread's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub turns: u64,
    pub busy: Duration,
}

/// Everything at one moment (step 2).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub services: Vec<ServiceSnapshot>,
    /// Totals of services that have exited.
    pub retired: Totals,
    /// Accepted connections alive.
    pub connections: usize,
    pub accepted: u64,
    /// Connections closed at accept for `max_conns`.
    pub refused: u64,
    pub slice_warnings: u64,
    pub slice_kills: u64,
    pub lane: LaneSnapshot,
    pub workers: Vec<WorkerSnapshot>,
}

impl Snapshot {
    /// Totals of every service that ever ran (live and retired).
    pub fn totals(&self) -> Totals {
        let mut totals = self.retired;
        for service in &self.services {
            totals.add(service.totals);
        }
        totals
    }

    /// Live sessions of every service.
    pub fn sessions(&self) -> usize {
        self.services.iter().map(|s| s.sessions).sum()
    }

    /// Bytes used by every VM.
    pub fn memory(&self) -> usize {
        self.services.iter().map(|s| s.memory).sum()
    }

    /// Events waiting in every mailbox, and the longest mailbox.
    pub fn mailboxes(&self) -> (usize, usize) {
        let total = self.services.iter().map(|s| s.mailbox).sum();
        let longest = self.services.iter().map(|s| s.mailbox).max().unwrap_or(0);
        (total, longest)
    }
}
