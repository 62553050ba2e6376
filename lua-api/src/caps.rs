//! Capabilities: what a service may reach beyond its own VM. Every binding
//! that touches the outside (files, databases, sockets, other services,
//! the environment, shared dicts, lane threads) checks its capability first
//! with [`require`], before it looks at its arguments, and a refusal raises
//! an error that names the binding and the capability:
//! `lunet.fs.read: not permitted: spawned without fs`.
//!
//! The model (the Lua reference has it as "Sandbox and capabilities"):
//! 1. Hosts, the first service of `lunet run` and `spawn{trusted = true}`
//!    services are *trusted*: full standard library and every capability.
//! 2. Any other spawned service is *sandboxed* and holds only what its
//!    spawn declared: `lunet.spawn{script = ..., caps = {fs = true, dicts =
//!    {"kv"}}}`. Nothing declared, nothing held.
//! 3. A parent grants only what it holds ([`Caps::grant`]): a refusal
//!    raises at `lunet.spawn` naming the capability, and `trusted = true`
//!    comes only from a trusted parent.
//! 4. The checks live in the Rust half of each binding (and in the
//!    scheduler for lane calls, which a script could yield by hand), so
//!    they hold whatever the Lua wrappers do. The prelude also gets the
//!    held set ([`Caps::held_table`]) to refuse before it validates
//!    arguments, with the same message.

use std::sync::Arc;

use mlua::{Lua, Table, Value};

use crate::protocol::LaneOp;
use crate::state::with_state;

/// One thing a service may be granted. The names are the keys of
/// `lunet.spawn{caps = {...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `lunet.fs`: read and write files.
    Fs,
    /// `lunet.db`: open and use SQLite databases (which can create files:
    /// `ATTACH`, `VACUUM INTO`).
    Db,
    /// Outbound connections (`lunet.connect`, HTTP, Redis) and
    /// `lunet.resolve`.
    Net,
    /// `lunet.listen` and the servers built on it.
    Listen,
    /// `lunet.spawn`.
    Spawn,
    /// `lunet.kill` beyond the caller's own children.
    Kill,
    /// `lunet.getenv`.
    Env,
    /// `lunet.shared.dict` (all dicts, or the names listed).
    Dicts,
    /// `lunet.lane.sleep`: holding a lane thread.
    Lane,
    /// The state interface of the runtime model.
    State,
    /// The storage interface of the runtime model.
    Storage,
    /// `lunet.cluster` and sends and calls to services of other nodes.
    Cluster,
}

impl Capability {
    /// Every capability, in the order the reference lists them.
    pub const ALL: [Capability; 12] = [
        Capability::Fs,
        Capability::Db,
        Capability::Net,
        Capability::Listen,
        Capability::Spawn,
        Capability::Kill,
        Capability::Env,
        Capability::Dicts,
        Capability::Lane,
        Capability::State,
        Capability::Storage,
        Capability::Cluster,
    ];

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
            Capability::Lane => "lane",
            Capability::State => "state",
            Capability::Storage => "storage",
            Capability::Cluster => "cluster",
        }
    }

    fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Why a `caps` table is malformed (raised at `lunet.spawn`).
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("lunet.spawn: caps must be a table like {{fs = true}}, got {0}")]
    NotATable(&'static str),
    #[error("lunet.spawn: unknown capability '{name}' (known: {known})")]
    Unknown { name: String, known: String },
    #[error("lunet.spawn: caps.{name} must be true or false{extra}, got {got}")]
    BadValue {
        name: &'static str,
        extra: &'static str,
        got: String,
    },
    #[error(
        "lunet.spawn: a trusted service holds every capability: give trusted or caps, not both"
    )]
    TrustedWithCaps,
}

/// Why a parent cannot grant what a spawn asks for.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("lunet.spawn: cannot grant {0}: this service was spawned without it")]
    NotHeld(&'static str),
    #[error("lunet.spawn: cannot grant trusted: only a trusted service can")]
    Trusted,
    #[error(
        "lunet.spawn: cannot grant dicts {asked}: this service may reach only the dicts {held}"
    )]
    Dicts { asked: String, held: String },
}

#[derive(Debug)]
struct Held {
    trusted: bool,
    bits: u32,
    /// With `Dicts` held: `None` reaches every dict, `Some` only these.
    dicts: Option<Vec<String>>,
}

/// The capabilities a service holds. Immutable; cheap to clone.
#[derive(Clone, Debug)]
pub struct Caps(Arc<Held>);

impl Caps {
    /// Everything: the main script, hosts, trusted services.
    pub fn all() -> Caps {
        Caps(Arc::new(Held {
            trusted: true,
            bits: u32::MAX,
            dicts: None,
        }))
    }

    /// Nothing: a sandboxed service spawned without `caps`.
    pub fn none() -> Caps {
        Caps(Arc::new(Held {
            trusted: false,
            bits: 0,
            dicts: None,
        }))
    }

    /// These caps and `capability` (`spawn{state = true}` and `storage =`
    /// declare theirs this way).
    pub fn with(&self, capability: Capability) -> Caps {
        if self.allows(capability) {
            return self.clone();
        }
        Caps(Arc::new(Held {
            trusted: self.0.trusted,
            bits: self.0.bits | capability.bit(),
            dicts: self.0.dicts.clone(),
        }))
    }

    /// Full standard library and every capability.
    pub fn is_trusted(&self) -> bool {
        self.0.trusted
    }

    pub fn allows(&self, capability: Capability) -> bool {
        self.0.bits & capability.bit() != 0
    }

    /// Whether the dict `name` is reachable.
    pub fn allows_dict(&self, name: &[u8]) -> bool {
        self.allows(Capability::Dicts)
            && self
                .0
                .dicts
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n.as_bytes() == name))
    }

    /// The sandboxed set a `caps` table declares (`nil`: nothing).
    pub fn from_lua(caps: &Value) -> Result<Caps, CapsError> {
        let table = match caps {
            Value::Nil => return Ok(Caps::none()),
            Value::Table(table) => table,
            other => return Err(CapsError::NotATable(other.type_name())),
        };
        let mut held = Held {
            trusted: false,
            bits: 0,
            dicts: None,
        };
        for pair in table.pairs::<Value, Value>() {
            let (key, value) =
                pair.map_err(|_| CapsError::NotATable("a table that cannot be read"))?;
            let name = match &key {
                Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            };
            let capability = Capability::from_name(&name).ok_or_else(|| CapsError::Unknown {
                name: name.clone(),
                known: Capability::ALL.map(Capability::name).join(", "),
            })?;
            match (capability, value) {
                (_, Value::Boolean(false)) => {}
                (_, Value::Boolean(true)) => held.bits |= capability.bit(),
                (Capability::Dicts, Value::Table(names)) => {
                    let mut list = Vec::new();
                    for name in names.sequence_values::<Value>() {
                        match name {
                            Ok(Value::String(s)) => list.push(s.to_string_lossy()),
                            other => return Err(dicts_value(other.map_or("?", |v| v.type_name()))),
                        }
                    }
                    held.bits |= capability.bit();
                    held.dicts = Some(list);
                }
                (Capability::Dicts, other) => return Err(dicts_value(other.type_name())),
                (_, other) => {
                    return Err(CapsError::BadValue {
                        name: capability.name(),
                        extra: "",
                        got: other.type_name().to_string(),
                    })
                }
            }
        }
        Ok(Caps(Arc::new(held)))
    }

    /// Step 3: whether a service holding `self` may give `child`.
    pub fn grant(&self, child: &Caps) -> Result<(), GrantError> {
        if self.is_trusted() {
            return Ok(());
        }
        if child.is_trusted() {
            return Err(GrantError::Trusted);
        }
        for capability in Capability::ALL {
            if child.allows(capability) && !self.allows(capability) {
                return Err(GrantError::NotHeld(capability.name()));
            }
        }
        if let Some(held) = &self.0.dicts {
            let wider = match &child.0.dicts {
                _ if !child.allows(Capability::Dicts) => None,
                None => Some("= true".to_string()),
                Some(asked) => asked
                    .iter()
                    .find(|name| !held.contains(name))
                    .map(|name| format!("'{name}'")),
            };
            if let Some(asked) = wider {
                return Err(GrantError::Dicts {
                    asked,
                    held: held.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Step 4: `{fs = true, db = false, ...}` for the prelude.
    pub fn held_table(&self, lua: &Lua) -> mlua::Result<Table> {
        let table = lua.create_table_with_capacity(0, Capability::ALL.len())?;
        for capability in Capability::ALL {
            table.raw_set(capability.name(), self.allows(capability))?;
        }
        Ok(table)
    }
}

fn dicts_value(got: &str) -> CapsError {
    CapsError::BadValue {
        name: "dicts",
        extra: " or a list of dict names",
        got: got.to_string(),
    }
}

/// What a lane call needs, and the binding it is made through.
pub fn lane_capability(op: LaneOp) -> (Capability, &'static str) {
    match op {
        LaneOp::DbOpen => (Capability::Db, "lunet.db.open"),
        LaneOp::DbExec => (Capability::Db, "db:exec"),
        LaneOp::DbQuery => (Capability::Db, "db:query"),
        LaneOp::DbAtomic => (Capability::Db, "db:atomic"),
        LaneOp::FsRead => (Capability::Fs, "lunet.fs.read"),
        LaneOp::FsWrite => (Capability::Fs, "lunet.fs.write"),
        LaneOp::Resolve => (Capability::Net, "lunet.resolve"),
        LaneOp::Sleep => (Capability::Lane, "lunet.lane.sleep"),
        LaneOp::StateLoad => (Capability::State, "lunet.state"),
        LaneOp::StateSave => (Capability::State, "state:save"),
        LaneOp::StorageExec => (Capability::Storage, "storage:exec"),
        LaneOp::StorageQuery => (Capability::Storage, "storage:query"),
        LaneOp::StorageAtomic => (Capability::Storage, "storage:atomic"),
    }
}

/// The refusal every binding raises.
pub fn denied(what: &str, capability: Capability) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{what}: not permitted: spawned without {}",
        capability.name()
    ))
}

/// Raises "`what`: not permitted: spawned without `capability`" unless the
/// calling VM holds `capability`.
pub fn require(lua: &Lua, capability: Capability, what: &str) -> mlua::Result<()> {
    let allowed = with_state(lua, |state| state.caps.allows(capability))
        .map_err(|e| mlua::Error::runtime(format!("{what}: {e}")))?;
    if allowed {
        Ok(())
    } else {
        Err(denied(what, capability))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lua: &Lua, source: &str) -> Result<Caps, CapsError> {
        Caps::from_lua(&lua.load(source).eval::<Value>().unwrap())
    }

    #[test]
    fn a_caps_table_declares_what_it_names_and_nothing_else() {
        let lua = Lua::new();
        let caps = parse(&lua, "{fs = true, db = false, dicts = {'kv', 'sessions'}}").unwrap();
        assert!(caps.allows(Capability::Fs));
        assert!(!caps.allows(Capability::Db));
        assert!(!caps.allows(Capability::Net));
        assert!(!caps.is_trusted());
        assert!(caps.allows_dict(b"kv") && caps.allows_dict(b"sessions"));
        assert!(!caps.allows_dict(b"other"));
        let none = parse(&lua, "nil").unwrap();
        assert!(Capability::ALL.iter().all(|c| !none.allows(*c)));
        assert!(!none.allows_dict(b"kv"));
        let error = parse(&lua, "{files = true}").unwrap_err().to_string();
        assert!(error.contains("unknown capability 'files'"), "{error}");
        let error = parse(&lua, "{net = 1}").unwrap_err().to_string();
        assert!(error.contains("caps.net must be true or false"), "{error}");
        let error = parse(&lua, "{dicts = {1}}").unwrap_err().to_string();
        assert!(error.contains("list of dict names"), "{error}");
    }

    #[test]
    fn a_parent_grants_only_what_it_holds() {
        let lua = Lua::new();
        let parent = parse(&lua, "{fs = true, spawn = true, dicts = {'kv'}}").unwrap();
        assert!(parent.grant(&parse(&lua, "{fs = true}").unwrap()).is_ok());
        assert!(parent
            .grant(&parse(&lua, "{dicts = {'kv'}}").unwrap())
            .is_ok());
        let error = parent
            .grant(&parse(&lua, "{net = true}").unwrap())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "lunet.spawn: cannot grant net: this service was spawned without it"
        );
        let error = parent
            .grant(&parse(&lua, "{dicts = true}").unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("dicts = true"), "{error}");
        let error = parent
            .grant(&parse(&lua, "{dicts = {'kv', 'secrets'}}").unwrap())
            .unwrap_err();
        assert!(error.to_string().contains("'secrets'"), "{error}");
        assert!(matches!(
            parent.grant(&Caps::all()),
            Err(GrantError::Trusted)
        ));
        assert!(Caps::all().grant(&Caps::all()).is_ok());
    }
}
