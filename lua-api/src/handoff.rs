//! Socket hand-off, skynet's gate -> agent: a service passes a connection
//! it owns to another service by sending the socket object.
//!
//! Protocol:
//! 1. `lunet.send(h, ..., sock, ...)` or `lunet.call` (the socket may sit
//!    in a table among the arguments): the codec encodes each socket object
//!    as a reference to an attachment of the message (`codec::Handing`).
//! 2. [`detach`] takes each connection out of the sender's table: its
//!    socket, input and output buffers (bytes already buffered travel
//!    along), peer, timeout and `ConnectionCount`. It refuses, before
//!    taking any, a socket a session waits on ("socket busy") or one that
//!    is closed. The sender's Lua object now finds nothing under its id:
//!    every call on it returns `nil, "closed"`, and a handler that handed
//!    its own connection away closes nothing when it ends.
//! 3. The message is posted. If that fails (the receiver is dead or
//!    overloaded) it comes back whole and [`reattach`] puts each connection
//!    back under its old id: the sender's object works again, nothing is
//!    lost, the sender gets the error.
//! 4. The receiver, before decoding, [`attach`]es each connection under an
//!    id of its own: it re-registers the socket with its own token
//!    (EPOLL_CTL_MOD reports the current readiness again, so no edge is
//!    lost), believes it readable and writable (so the first call tries the
//!    syscall), and moves the connection's load to itself
//!    (`ConnectionCount::move_to`). The codec then makes one socket object
//!    per attachment (`codec::Receiving`).
//! 5. A message dropped unread (the receiver exited, has no dispatch
//!    function) drops its attachments: each closes its socket and counts
//!    the connection down.
//!
//! Between 2 and 4 the reactor may still report the socket under the
//! sender's token: a readiness for a slot that is free or reused is a hint
//! its owner confirms with a syscall, so it is harmless.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use lunet_core::connection::Connection;
use lunet_core::{ConnectionCount, Runtime, Service};

use crate::ids::ConnectionId;
use crate::state::{ConnEntry, ConnectionPhase, VmState};

/// A connection on its way from one service to another: the attachment
/// of the message.
pub struct HandedSocket {
    conn: Connection,
    peer: Option<SocketAddr>,
    count: Option<ConnectionCount>,
    timeout_ms: u64,
}

impl HandedSocket {
    fn into_entry(self) -> ConnEntry {
        ConnEntry::new(
            self.conn,
            ConnectionPhase::Open,
            self.peer,
            self.count,
            self.timeout_ms,
        )
    }
}

/// Why a socket cannot be handed over (raised at the sender).
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("socket busy: a session waits on it")]
    Busy,
    #[error("cannot hand over a closed socket")]
    Closed,
}

/// Step 2: takes the connections `ids` out of the sender's table, all or
/// none, as the attachments of a message.
pub fn detach(
    state: &mut VmState,
    ids: &[ConnectionId],
) -> Result<Vec<Box<dyn Any + Send>>, HandOffError> {
    for &id in ids {
        let entry = state.conns.get(id).ok_or(HandOffError::Closed)?;
        if entry.phase != ConnectionPhase::Open {
            return Err(HandOffError::Closed);
        }
        if entry.reader.is_some() || !entry.writers.is_empty() {
            return Err(HandOffError::Busy);
        }
    }
    let mut attachments: Vec<Box<dyn Any + Send>> = Vec::with_capacity(ids.len());
    for &id in ids {
        let Some(mut entry) = state.conns.remove(id) else {
            continue;
        };
        // What this slice wrote goes out now, as it would have after it;
        // what the socket does not take travels along.
        if !entry.conn.output.is_empty() {
            let _ = entry.conn.flush();
        }
        attachments.push(Box::new(HandedSocket {
            conn: entry.conn,
            peer: entry.peer,
            count: entry.count.take(),
            timeout_ms: entry.timeout_ms,
        }));
    }
    Ok(attachments)
}

/// Step 3: the message came back: each connection returns under its old
/// id (the socket is still registered under the sender's token).
pub fn reattach(state: &mut VmState, ids: &[ConnectionId], attachments: Vec<Box<dyn Any + Send>>) {
    for (&id, attachment) in ids.iter().zip(attachments) {
        if let Ok(handed) = attachment.downcast::<HandedSocket>() {
            let unsent = !handed.conn.output.is_empty();
            // Nothing was inserted since `detach`: the slot is free.
            if state.conns.restore(id, handed.into_entry()) && unsent {
                state.mark_dirty(id);
            }
        }
    }
}

/// Step 4: attaches the connections a message carries to the receiver,
/// in order; `None` for an attachment that is not a connection or could
/// not be registered (it is dropped, which closes it).
pub fn attach(
    state: &mut VmState,
    runtime: &Runtime,
    service: &Arc<Service>,
    attachments: Vec<Box<dyn Any + Send>>,
) -> Vec<Option<ConnectionId>> {
    attachments
        .into_iter()
        .map(|attachment| {
            let mut handed = attachment.downcast::<HandedSocket>().ok()?;
            if let Some(count) = &mut handed.count {
                count.move_to(service);
            }
            handed.conn.readable = true;
            handed.conn.writable = true;
            let id = state.conns.insert(handed.into_entry());
            let entry = state.conns.get_mut(id)?;
            let token = lunet_core::reactor::token(service.index(), id.index());
            let registered = runtime.registry().reregister(
                &mut entry.conn.stream,
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            );
            if let Err(e) = registered {
                tracing::error!(
                    service = service.id(),
                    "cannot take over a handed socket: {e}"
                );
                state.conns.remove(id);
                return None;
            }
            if !entry.conn.output.is_empty() {
                state.mark_dirty(id);
            }
            Some(id)
        })
        .collect()
}
