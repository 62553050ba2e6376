//! The directory of services: every live service by id, and their names.
//!
//! Protocol:
//! 1. [`Directory::insert`] gives a new service an id (unique for the life
//!    of the process, never reused: it is the handle the layer above hands
//!    out) and an index (reused after exit: it is what socket tokens carry,
//!    so the reactor's table stays as small as the most services alive).
//! 2. A name points at an id. It is taken only while that service lives:
//!    [`Directory::register_name`] lets a name whose holder has exited go to
//!    a new service, and [`Directory::remove`] drops the exited one's names.
//!    Two marks the layer above sets keep a sandbox from taking over what
//!    trusted code set up: [`Directory::protect`] (hosts, the first service:
//!    the layer above refuses to kill them from a sandbox) and
//!    [`Directory::reserve_names`] (the service's names, once it is gone,
//!    can be registered again only with `trusted`).
//! 3. [`Directory::remove`] runs on the worker that retired the service,
//!    after its body is gone, and wakes every thread waiting for an exit.
//!    It adds the service's counters to the retired totals under the same
//!    lock that [`Directory::snapshot`] reads them under (`stats.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::service::{Service, ServiceBody};
use crate::stats::{ServiceSnapshot, Totals};

/// [`crate::Runtime::register_name`] found the name held by a live service.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is already the name of service :{owner}")]
pub struct NameTaken {
    pub name: String,
    /// The id of the live service that holds the name.
    pub owner: u64,
}

/// [`crate::Runtime::register_name`] refused a name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameRefused {
    #[error(transparent)]
    Taken(#[from] NameTaken),
    /// Its last holder was killed by a sandboxed service (step 2).
    #[error("'{0}' is reserved: a sandboxed service killed its last holder, so only a trusted service can register it")]
    Reserved(String),
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Arc<Service>>,
    names: HashMap<String, u64>,
    /// Services whose names become reserved when they go (step 2).
    reserving: std::collections::HashSet<u64>,
    /// Names only a trusted registration may take (step 2).
    reserved: std::collections::HashSet<String>,
    /// Services a sandbox may not kill (step 2).
    protected: std::collections::HashSet<u64>,
    free_indexes: Vec<u32>,
    next_index: u32,
    /// Counters of the services that have exited (step 3).
    retired: Totals,
}

pub(crate) struct Directory {
    table: Mutex<Table>,
    /// Signalled whenever a service exits.
    exited: Condvar,
    next_id: AtomicU64,
}

impl Directory {
    pub(crate) fn new() -> Directory {
        Directory {
            table: Mutex::new(Table::default()),
            exited: Condvar::new(),
            next_id: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step 1: creates and lists a service around `body`.
    pub(crate) fn insert(&self, name: &str, body: Box<dyn ServiceBody>) -> Arc<Service> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut table = self.lock();
        let index = table.free_indexes.pop().unwrap_or_else(|| {
            table.next_index += 1;
            table.next_index - 1
        });
        let service = Arc::new(Service::new(id, index, name.to_string(), body));
        table.by_id.insert(id, service.clone());
        service
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<Service>> {
        self.lock().by_id.get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Service>> {
        self.lock().by_id.values().cloned().collect()
    }

    /// Step 3.
    pub(crate) fn remove(&self, service: &Arc<Service>) {
        {
            let mut table = self.lock();
            let id = service.id();
            if table.by_id.remove(&id).is_some() {
                table.retired.add(service.stats().totals());
            }
            table.free_indexes.push(service.index());
            table.protected.remove(&id);
            if table.reserving.remove(&id) {
                let Table {
                    names, reserved, ..
                } = &mut *table;
                reserved.extend(
                    names
                        .iter()
                        .filter(|(_, owner)| **owner == id)
                        .map(|(name, _)| name.clone()),
                );
            }
            table.names.retain(|_, owner| *owner != id);
        }
        self.exited.notify_all();
    }

    /// Every live service as the console lists it, and the retired totals,
    /// read together (step 3). Mailbox lengths are read after the
    /// directory's lock is released: spawns and exits never wait for a
    /// busy mailbox.
    pub(crate) fn snapshot(&self) -> (Vec<ServiceSnapshot>, Totals) {
        let (services, retired) = {
            let table = self.lock();
            let services: Vec<(Arc<Service>, Totals)> = table
                .by_id
                .values()
                .map(|service| (service.clone(), service.stats().totals()))
                .collect();
            (services, table.retired)
        };
        let mut listed: Vec<ServiceSnapshot> = services
            .into_iter()
            .map(|(service, totals)| ServiceSnapshot {
                id: service.id(),
                name: service.name().to_string(),
                mailbox: service.mailbox_len(),
                connections: service.load(),
                memory: service.stats().memory(),
                sessions: service.stats().sessions(),
                totals,
            })
            .collect();
        listed.sort_by_key(|service| service.id);
        (listed, retired)
    }

    /// Step 2: gives `id` a name; a reserved name only when `trusted`
    /// (which lifts the reservation).
    pub(crate) fn register_name(
        &self,
        name: &str,
        id: u64,
        trusted: bool,
    ) -> Result<(), NameRefused> {
        let mut table = self.lock();
        if let Some(&owner) = table.names.get(name) {
            if owner != id && table.by_id.contains_key(&owner) {
                return Err(NameRefused::Taken(NameTaken {
                    name: name.to_string(),
                    owner,
                }));
            }
        }
        if table.reserved.contains(name) {
            if !trusted {
                return Err(NameRefused::Reserved(name.to_string()));
            }
            table.reserved.remove(name);
        }
        table.names.insert(name.to_string(), id);
        Ok(())
    }

    /// Step 2: the names `id` holds when it goes are reserved.
    pub(crate) fn reserve_names(&self, id: u64) {
        let mut table = self.lock();
        if table.by_id.contains_key(&id) {
            table.reserving.insert(id);
        }
    }

    /// Step 2: marks `id` as one a sandbox may not kill.
    pub(crate) fn protect(&self, id: u64) {
        let mut table = self.lock();
        if table.by_id.contains_key(&id) {
            table.protected.insert(id);
        }
    }

    pub(crate) fn is_protected(&self, id: u64) -> bool {
        self.lock().protected.contains(&id)
    }

    pub(crate) fn query_name(&self, name: &str) -> Option<u64> {
        let table = self.lock();
        table
            .names
            .get(name)
            .copied()
            .filter(|id| table.by_id.contains_key(id))
    }

    /// Blocks until service `id` is gone, or `timeout` (if any) has passed;
    /// true if it is gone.
    pub(crate) fn wait_exit(&self, id: u64, timeout: Option<Duration>) -> bool {
        self.wait_until(timeout, |table| !table.by_id.contains_key(&id))
    }

    fn wait_until(&self, timeout: Option<Duration>, done: impl Fn(&Table) -> bool) -> bool {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut table = self.lock();
        while !done(&table) {
            table = match deadline {
                None => self.exited.wait(table).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.exited
                        .wait_timeout(table, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }
}
