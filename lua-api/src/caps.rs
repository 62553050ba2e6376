//! Capabilities: what a service may reach beyond its own VM. Every binding
//! that touches the outside (files, databases, sockets, other services,
//! the environment, shared dicts) checks its capability first with
//! [`require`], and a refusal raises an error that names it.
//!
//! This is the shape the bindings code against; which capabilities a
//! sandboxed service holds, how a parent grants them and the checks of
//! `kill` and names are filled in by the isolation work (issue 9). Today
//! every service holds every capability.

use mlua::Lua;

use crate::state::with_state;

/// One thing a service may be granted. The names are the keys of
/// `lunet.spawn{caps = {...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `lunet.fs`: read and write files.
    Fs,
    /// `lunet.db`: open SQLite databases.
    Db,
    /// Outbound connections (`lunet.connect`, HTTP, Redis, resolve).
    Net,
    /// `lunet.listen` and the servers built on it.
    Listen,
    /// `lunet.spawn`.
    Spawn,
    /// `lunet.kill` beyond the caller's own children.
    Kill,
    /// `lunet.getenv`.
    Env,
    /// `lunet.shared.dict`.
    Dicts,
    /// The state interface of the runtime model.
    State,
    /// The storage interface of the runtime model.
    Storage,
}

impl Capability {
    /// The capability's name, as written in `caps = {...}`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Fs => "fs",
            Capability::Db => "db",
            Capability::Net => "net",
            Capability::Listen => "listen",
            Capability::Spawn => "spawn",
            Capability::Kill => "kill",
            Capability::Env => "env",
            Capability::Dicts => "dicts",
            Capability::State => "state",
            Capability::Storage => "storage",
        }
    }
}

/// The capabilities a service holds.
#[derive(Clone, Debug)]
pub struct Caps {
    all: bool,
}

impl Caps {
    /// Everything: the main script, hosts, trusted services.
    pub fn all() -> Caps {
        Caps { all: true }
    }

    pub fn allows(&self, _capability: Capability) -> bool {
        self.all
    }
}

/// Raises "`what`: not permitted: spawned without `capability`" unless the
/// calling VM holds `capability`.
pub fn require(lua: &Lua, capability: Capability, what: &str) -> mlua::Result<()> {
    let allowed = with_state(lua, |state| state.caps.allows(capability))
        .map_err(|e| mlua::Error::runtime(format!("{what}: {e}")))?;
    if allowed {
        Ok(())
    } else {
        Err(mlua::Error::runtime(format!(
            "{what}: not permitted: spawned without {}",
            capability.name()
        )))
    }
}
