//! The one event type. Everything that wakes a service is an [`Event`] in its
//! mailbox: socket readiness, an accepted connection, an expired timer, a
//! message from another service, a finished lane task, a freed lane slot,
//! shutdown.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Readiness of one socket, as the reactor saw it. Readiness is a hint: the
/// owner confirms it with a syscall that may return `WouldBlock`, so a stale
/// or spurious readiness is harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness(u8);

impl Readiness {
    pub const READABLE: Readiness = Readiness(1);
    pub const WRITABLE: Readiness = Readiness(2);
    /// The peer closed or reset; reading will tell which.
    pub const HANGUP: Readiness = Readiness(4);

    pub fn empty() -> Readiness {
        Readiness(0)
    }
    pub fn is_readable(self) -> bool {
        self.0 & (Self::READABLE.0 | Self::HANGUP.0) != 0
    }
    pub fn is_writable(self) -> bool {
        self.0 & (Self::WRITABLE.0 | Self::HANGUP.0) != 0
    }
    pub fn is_hangup(self) -> bool {
        self.0 & Self::HANGUP.0 != 0
    }
}

impl std::ops::BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, other: Readiness) -> Readiness {
        Readiness(self.0 | other.0)
    }
}

/// A message between services: an opaque payload (the layer above owns the
/// codec and the meaning of `kind`), who sent it and the session that waits
/// for an answer (0 = none). `attachments` carry what cannot be bytes (a
/// connection handed from one service to another); empty, it costs nothing.
pub struct Message {
    pub source: u64,
    pub session: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
    pub attachments: Vec<Box<dyn Any + Send>>,
}

impl Message {
    /// A message with a payload and no attachments.
    pub fn new(source: u64, session: u64, kind: u8, payload: Vec<u8>) -> Message {
        Message {
            source,
            session,
            kind,
            payload,
            attachments: Vec::new(),
        }
    }

    /// A bare signal: no sender, no session, no payload.
    pub fn signal(kind: u8) -> Message {
        Message::new(0, 0, kind, Vec::new())
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("source", &self.source)
            .field("session", &self.session)
            .field("kind", &self.kind)
            .field("payload", &self.payload.len())
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// What wakes a service.
pub enum Event {
    /// Readiness of the socket in `slot` of the service's connection table.
    Io { slot: u32, readiness: Readiness },
    /// A connection accepted on a listener this service hosts. Dropping
    /// the event (a host that retired meanwhile) drops the connection and
    /// counts it down: see [`Accepted`].
    Accept { listener: u32, accepted: Accepted },
    /// A timer the service set has expired; `id` is the service's own.
    Timer { id: u64 },
    /// A message from another service (or from the runtime itself).
    Message(Message),
    /// A lane task finished; `ticket` is the service's own.
    LaneDone {
        ticket: u64,
        result: Box<dyn Any + Send>,
    },
    /// A lane slot freed after the service found the queue full: it may
    /// submit its parked tasks again (see `lane.rs`).
    LaneSlot,
    /// The runtime is shutting down: stop accepting, finish what is in flight.
    Shutdown,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Io { slot, readiness } => write!(f, "Io({slot}, {readiness:?})"),
            Event::Accept { listener, accepted } => {
                write!(f, "Accept({listener}, {})", accepted.peer)
            }
            Event::Timer { id } => write!(f, "Timer({id})"),
            Event::Message(m) => write!(f, "Message({m:?})"),
            Event::LaneDone { ticket, .. } => write!(f, "LaneDone({ticket})"),
            Event::LaneSlot => write!(f, "LaneSlot"),
            Event::Shutdown => write!(f, "Shutdown"),
        }
    }
}

/// A connection the reactor accepted, with its place in the counts.
pub struct Accepted {
    pub stream: mio::net::TcpStream,
    pub peer: SocketAddr,
    pub count: ConnectionCount,
}

/// One accepted connection's share of the counts `--max-conns` and the
/// least-loaded-host choice read: the runtime's live connections and the
/// load of the service holding it. Created by the reactor at accept and
/// counted down when dropped, wherever that happens (a closed socket, an
/// `Accept` event dropped with a retired host's mailbox, a service that
/// exits holding connections), so the count cannot leak. A connection
/// handed to another service moves its load there with [`Self::move_to`].
pub struct ConnectionCount {
    total: Arc<AtomicUsize>,
    holder: Arc<AtomicUsize>,
}

impl ConnectionCount {
    pub(crate) fn new(total: &Arc<AtomicUsize>, holder: &Arc<AtomicUsize>) -> ConnectionCount {
        total.fetch_add(1, Ordering::Relaxed);
        holder.fetch_add(1, Ordering::Relaxed);
        ConnectionCount {
            total: total.clone(),
            holder: holder.clone(),
        }
    }

    /// The connection now belongs to `service`: its load moves there.
    pub fn move_to(&mut self, service: &crate::service::Service) {
        let holder = service.load_counter();
        if Arc::ptr_eq(&holder, &self.holder) {
            return;
        }
        holder.fetch_add(1, Ordering::Relaxed);
        self.holder.fetch_sub(1, Ordering::Relaxed);
        self.holder = holder;
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.holder.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}
