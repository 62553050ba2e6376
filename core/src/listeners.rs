//! The listening sockets of a runtime, by key, as the hosts see them.
//!
//! Protocol:
//! 1. The first [`Listeners::listen`] with a key binds the socket here, on
//!    the calling thread (so a bind error goes back to the caller), and
//!    hands it to the reactor (`AddListener`); every call with that key,
//!    the first included, joins the calling host to it (`JoinListener`).
//!    The reactor accepts and hands each connection to the least-loaded
//!    host that joined.
//! 2. The table only remembers which key has which listener id and address;
//!    the sockets belong to the reactor.
//! 3. [`Listeners::close`] refuses later calls; the reactor closes the
//!    sockets (`CloseListeners`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::reactor::{self, Command};
use crate::service::Service;

/// Why [`crate::Runtime::listen`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Listeners were closed (the runtime is shutting down).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The address is not one to listen on.
    #[error("{0}")]
    Address(#[source] io::Error),
    /// The socket could not be set up, bound or put to listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

struct Entry {
    id: u32,
    local: SocketAddr,
}

pub(crate) struct Listeners {
    table: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU32,
    accepting: AtomicBool,
    backlog: i32,
}

impl Listeners {
    pub(crate) fn new(backlog: i32) -> Listeners {
        Listeners {
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(0),
            accepting: AtomicBool::new(true),
            backlog,
        }
    }

    /// Step 1: binds (or joins) the listener for `key` on `addr` for `host`.
    /// Returns the listener id and the bound address.
    pub(crate) fn listen(
        &self,
        reactor: &reactor::Handle,
        addr: &str,
        key: &str,
        host: &Arc<Service>,
    ) -> Result<(u32, SocketAddr), ListenError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(ListenError::ShuttingDown);
        }
        // Held across the bind: two hosts listening with one key at once
        // must end up on one socket.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let join = |id| {
            reactor.command(Command::JoinListener {
                id,
                host: host.clone(),
            })
        };
        if let Some(entry) = table.get(key) {
            join(entry.id);
            return Ok((entry.id, entry.local));
        }
        let socket_addr = crate::net::parse_addr(addr).map_err(ListenError::Address)?;
        let bind_error = |source| ListenError::Bind {
            addr: socket_addr,
            source,
        };
        let listener = crate::net::bind_listener(socket_addr, self.backlog).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        table.insert(key.to_string(), Entry { id, local });
        tracing::info!("listening on {local}");
        reactor.command(Command::AddListener { id, listener });
        join(id);
        Ok((id, local))
    }

    /// Step 3.
    pub(crate) fn close(&self, reactor: &reactor::Handle) {
        self.accepting.store(false, Ordering::SeqCst);
        reactor.command(Command::CloseListeners);
    }
}
