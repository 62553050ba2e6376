//! The parts of lunet's Lua side that a VM loads on first use.
//!
//! `prelude.lua` is what every VM runs when it is built; the rest of the
//! `lunet` module, the socket methods, the standard libraries' policy and
//! `lunet.redis` are Lua chunks in `prelude/` (and `redis.lua`), each
//! compiled once per process without debug info ([`Chunk`]) and loaded
//! into a VM the first time it reaches for one of its members. An idle
//! service holds only the prelude; each chunk loaded costs a VM its
//! functions' prototypes (1 to 5 KB each).
//!
//! `core.part(name)` is a part by its own name; `core.member(name)` (see
//! [`install`]; `"*"` lists every name) tells `prelude.lua` where
//! `lunet[name]` comes from: `true` for a Rust function of `core` under
//! the same name, a function that builds it (a part's chunk, or a
//! battery's builder, `batteries.rs`), or `nil`. Each part is called with
//! `(core, lunet, internals)`; it puts its members in place (or returns
//! the member, for `redis` and the batteries).

use std::sync::OnceLock;

use mlua::{Function, Lua, Table, Value};

/// A Lua chunk of lunet's, compiled once per process.
pub struct Chunk {
    name: &'static str,
    source: &'static str,
    bytecode: OnceLock<Vec<u8>>,
}

impl Chunk {
    pub const fn new(name: &'static str, source: &'static str) -> Chunk {
        Chunk {
            name,
            source,
            bytecode: OnceLock::new(),
        }
    }

    /// Its bytecode, without debug info: every VM loads the same, which
    /// saves compiling it again and the line tables (errors in user code
    /// still carry their positions).
    pub fn bytecode(&self) -> &[u8] {
        self.bytecode.get_or_init(|| {
            Lua::new()
                .load(self.source)
                .set_name(self.name)
                .into_function()
                .map(|f| f.dump(true))
                .expect("lunet's Lua chunks compile (checked by the unit tests)")
        })
    }

    /// The chunk as a function of `lua`.
    pub fn function(&self, lua: &Lua) -> mlua::Result<Function> {
        lua.load(self.bytecode())
            .set_name(self.name)
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .into_function()
    }
}

/// A part and the members of `lunet` it defines (none: it is loaded by
/// its own name only).
struct Part {
    name: &'static str,
    chunk: Chunk,
    members: &'static [&'static str],
}

macro_rules! part {
    ($name:literal, $file:literal, $members:expr) => {
        Part {
            name: $name,
            chunk: Chunk::new(concat!("@lunet/", $file), include_str!($file)),
            members: $members,
        }
    };
}

static PARTS: [Part; 10] = [
    part!("internals", "prelude/internals.lua", &[]),
    part!("socket", "prelude/socket.lua", &[]),
    part!("libraries", "prelude/libraries.lua", &[]),
    part!("coroutine", "prelude/coroutine.lua", &[]),
    part!("log", "prelude/log.lua", &["log"]),
    part!(
        "net",
        "prelude/net.lua",
        &[
            "listen",
            "connect",
            "sleep",
            "fork",
            "timeout",
            "on_shutdown"
        ]
    ),
    part!(
        "lane",
        "prelude/lane.lua",
        &["db", "fs", "resolve", "lane", "shared"]
    ),
    part!(
        "actors",
        "prelude/actors.lua",
        &[
            "register",
            "spawn",
            "call",
            "call_timeout",
            "exit",
            "wait",
            "queue"
        ]
    ),
    part!("redis", "redis.lua", &["redis"]),
    part!(
        "model",
        "prelude/model.lua",
        &["sub", "module", "fire", "attach", "group", "state", "storage"]
    ),
];

/// Members of `lunet` that are the Rust function of `core` under the same
/// name.
const CORE_MEMBERS: &[&str] = &[
    "getenv", "now", "self", "query", "kill", "send", "response", "wakeup",
];

/// The batteries' names (`batteries.rs`).
const BATTERIES: &[&str] = &["json", "http", "ws", "cluster"];

/// Where `lunet[name]` comes from (see the module header); for `"*"`, the
/// list of every name (what `pairs(lunet)` makes first).
fn member(lua: &Lua, name: &[u8]) -> mlua::Result<Value> {
    if name == b"*" {
        let names = CORE_MEMBERS
            .iter()
            .chain(PARTS.iter().flat_map(|part| part.members))
            .chain(BATTERIES);
        return Ok(Value::Table(lua.create_sequence_from(names.copied())?));
    }
    if CORE_MEMBERS.iter().any(|member| member.as_bytes() == name) {
        return Ok(Value::Boolean(true));
    }
    let part = PARTS
        .iter()
        .find(|part| part.members.iter().any(|m| m.as_bytes() == name));
    if let Some(part) = part {
        return Ok(Value::Function(part.chunk.function(lua)?));
    }
    crate::batteries::builder(lua, name)
}

/// Part `name` itself.
fn part(lua: &Lua, name: &[u8]) -> mlua::Result<Value> {
    match PARTS.iter().find(|part| part.name.as_bytes() == name) {
        Some(part) => Ok(Value::Function(part.chunk.function(lua)?)),
        None => Ok(Value::Nil),
    }
}

/// Puts `core.member` and `core.part` on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.raw_set(
        "member",
        lua.create_function(|lua, name: Value| match name {
            Value::String(name) => member(lua, &name.as_bytes()),
            _ => Ok(Value::Nil),
        })?,
    )?;
    core.raw_set(
        "part",
        lua.create_function(|lua, name: mlua::LuaString| part(lua, &name.as_bytes()))?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_compiles() {
        for part in &PARTS {
            assert!(!part.chunk.bytecode().is_empty(), "{}", part.name);
        }
    }

    #[test]
    fn every_battery_listed_has_a_builder() {
        let lua = Lua::new();
        for name in BATTERIES {
            let builder = crate::batteries::builder(&lua, name.as_bytes()).unwrap();
            assert!(matches!(builder, Value::Function(_)), "{name}");
        }
    }
}
