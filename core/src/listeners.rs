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
//! 4. Each entry also remembers the ids of the hosts that joined it, so
//!    that [`Listeners::switch`] knows which listeners no host is left on
//!    after a switch of hosts: it forgets those keys and has the reactor
//!    close their sockets in the same command that switches the hosts
//!    (`reactor.rs`, step 5).
//! 5. A key listed in the table's `bind_as` is bound to that address
//!    instead of the one asked for: a process of `lunet serve --processes`
//!    binds the ports its first sibling picked where the script asks for
//!    port 0, so all of them listen on one address (with SO_REUSEPORT).

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
    /// Every host that joined (step 4).
    hosts: Vec<u64>,
}

pub(crate) struct Listeners {
    table: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU32,
    accepting: AtomicBool,
    backlog: i32,
    reuse_port: bool,
    /// Step 5.
    bind_as: HashMap<String, SocketAddr>,
}

impl Listeners {
    pub(crate) fn new(
        backlog: i32,
        reuse_port: bool,
        bind_as: HashMap<String, SocketAddr>,
    ) -> Listeners {
        Listeners {
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(0),
            accepting: AtomicBool::new(true),
            backlog,
            reuse_port,
            bind_as,
        }
    }

    /// Step 1: binds (or joins) the listener for `key` on `addr` for `host`;
    /// `capped`: its accepts are refused at `max_conns` (the first call's
    /// choice holds). Returns the listener id and the bound address.
    pub(crate) fn listen(
        &self,
        reactor: &reactor::Handle,
        addr: &str,
        key: &str,
        host: &Arc<Service>,
        capped: bool,
    ) -> Result<(u32, SocketAddr), ListenError> {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(ListenError::ShuttingDown);
        }
        // Held across the bind: two hosts listening with one key at once
        // must end up on one socket.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let join = |entry: &mut Entry| {
            if !entry.hosts.contains(&host.id()) {
                entry.hosts.push(host.id());
            }
            reactor.command(Command::JoinListener {
                id: entry.id,
                host: host.clone(),
            })
        };
        if let Some(entry) = table.get_mut(key) {
            join(entry);
            return Ok((entry.id, entry.local));
        }
        let socket_addr = match self.bind_as.get(key) {
            Some(bound) => *bound,
            None => crate::net::parse_addr(addr).map_err(ListenError::Address)?,
        };
        let bind_error = |source| ListenError::Bind {
            addr: socket_addr,
            source,
        };
        let listener = crate::net::bind_listener(socket_addr, self.backlog, self.reuse_port)
            .map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::info!("listening on {local}");
        reactor.command(Command::AddListener {
            id,
            listener,
            capped,
        });
        let entry = table.entry(key.to_string()).or_insert(Entry {
            id,
            local,
            hosts: Vec::new(),
        });
        join(entry);
        Ok((id, local))
    }

    /// Step 4: takes the hosts in `retire` off every listener and admits
    /// those that joined while joins were held; listeners no host is left
    /// on are closed. Returns once the reactor has done it: from then on
    /// no connection goes to a retired host.
    pub(crate) fn switch(&self, reactor: &reactor::Handle, retire: &[u64]) {
        let (done, switched) = std::sync::mpsc::channel();
        {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let mut close = Vec::new();
            table.retain(|_, entry| {
                entry.hosts.retain(|host| !retire.contains(host));
                if entry.hosts.is_empty() {
                    tracing::info!("no longer listening on {}", entry.local);
                    close.push(entry.id);
                }
                !entry.hosts.is_empty()
            });
            // Queued under the table lock: a host listening meanwhile joins
            // either before the switch or after it, never a closed socket.
            reactor.command(Command::SwitchHosts {
                retire: retire.to_vec(),
                close,
                done,
            });
        }
        // The reactor answers unless it has stopped (then nothing accepts).
        let _ = switched.recv();
    }

    /// Every listener's key and bound address, sorted by key.
    pub(crate) fn bound(&self) -> Vec<(String, SocketAddr)> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut bound: Vec<(String, SocketAddr)> = table
            .iter()
            .map(|(key, entry)| (key.clone(), entry.local))
            .collect();
        bound.sort();
        bound
    }

    /// Step 3.
    pub(crate) fn close(&self, reactor: &reactor::Handle) {
        self.accepting.store(false, Ordering::SeqCst);
        reactor.command(Command::CloseListeners);
    }
}
