//! The one event type. Everything that wakes a service is an [`Event`] in its
//! mailbox: socket readiness, an accepted connection, an expired timer, a
//! message from another service, a finished lane task.

use std::any::Any;
use std::net::SocketAddr;

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
/// codec), who sent it and the session that waits for an answer (0 = none).
#[derive(Debug)]
pub struct Message {
    pub source: u64,
    pub session: u64,
    pub kind: u8,
    pub payload: Vec<u8>,
}

/// What wakes a service.
pub enum Event {
    /// Readiness of the socket in `slot` of the service's connection table.
    Io { slot: u32, readiness: Readiness },
    /// A connection accepted on a listener this service hosts.
    Accept {
        listener: u32,
        stream: mio::net::TcpStream,
        peer: SocketAddr,
    },
    /// A timer the service set has expired; `id` is the service's own.
    Timer { id: u64 },
    /// A message from another service (or from the runtime itself).
    Message(Message),
    /// A lane task finished; `ticket` is the service's own.
    LaneDone {
        ticket: u64,
        result: Box<dyn Any + Send>,
    },
    /// The runtime is shutting down: stop accepting, finish what is in flight.
    Shutdown,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Io { slot, readiness } => write!(f, "Io({slot}, {readiness:?})"),
            Event::Accept { listener, peer, .. } => write!(f, "Accept({listener}, {peer})"),
            Event::Timer { id } => write!(f, "Timer({id})"),
            Event::Message(m) => write!(f, "Message({m:?})"),
            Event::LaneDone { ticket, .. } => write!(f, "LaneDone({ticket})"),
            Event::Shutdown => write!(f, "Shutdown"),
        }
    }
}
