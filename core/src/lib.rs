//! lunet-core: the engine under lunet. No Lua lives here.
//!
//! Threads (see `shared/DESIGN.md`): one reactor (mio + timer wheel), N
//! workers (work stealing over services), the lane (blocking tasks) and the
//! monitor. A *service* is the scheduled unit; what runs inside it (a Lua VM)
//! is supplied by the layer above through the [`service::ServiceBody`] trait.
//!
//! State is split by the thread that owns it (see `runtime.rs`'s header and
//! docs/internals.md, "core: who owns what"); the unit tests of the
//! concurrent parts are in `tests/`, the loom model of the parking protocol
//! in `scheduler/loom_idle.rs`.

pub mod buffer;
mod clock;
pub mod connection;
mod directory;
pub mod event;
pub mod lane;
mod listeners;
mod monitor;
pub mod net;
pub mod proto;
pub mod reactor;
pub mod runtime;
mod scheduler;
pub mod service;
pub mod shared_dict;
pub mod stats;
pub mod timer_wheel;
pub mod tls;

#[cfg(all(test, not(loom)))]
mod tests;

pub use event::{Accepted, ConnectionCount, Event, Message, Readiness};
pub use runtime::{now_ms, Config, ListenError, NameRefused, NameTaken, Runtime, Threads};
pub use service::{Interrupt, PostError, Service, ServiceBody, Status};

/// Mailbox length at which the first "mailbox is long" warning is logged;
/// the next one at twice that, and so on. Four turns' worth at the default
/// budget (256): a backlog that long is a service not keeping up, not a burst.
pub const MAILBOX_WARN_FIRST: usize = 1024;
