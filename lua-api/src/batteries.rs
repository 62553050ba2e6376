//! The batteries of the `lunet` module: `lunet.json`, `lunet.http` and
//! `lunet.ws`, built the first time a script reaches for them (a VM that
//! never uses them does not pay for them: an idle service stays small).
//!
//! How a battery is built:
//! 1. `prelude.lua` gives the `lunet` table an `__index` that calls
//!    `core.member(name)` (`parts.rs`); for a battery's name that returns
//!    its builder.
//! 2. The builder runs once per VM with `(core, lunet, internals)`
//!    (`internals`: the prelude's `yield`, `cannot_wait`, socket maker) and
//!    its result is stored in `lunet` under the name.
//! 3. `json` is Rust (`json.rs`); `http` and `ws` are Lua chunks compiled
//!    once per process, without debug info (as the prelude), whose fast
//!    paths are the Rust functions `http/` and `ws.rs` put on `core`.
//!
//! JSON is pure and every VM gets it, sandboxed ones included; the
//! bindings that reach out check their capability when called.

use lunet_core::Runtime;
use mlua::{Lua, Table, Value};

use crate::parts::Chunk;

static HTTP: Chunk = Chunk::new("@lunet/http.lua", include_str!("http/http.lua"));
static WS: Chunk = Chunk::new("@lunet/ws.lua", include_str!("ws.lua"));
static CLUSTER: Chunk = Chunk::new("@lunet/cluster.lua", include_str!("cluster/cluster.lua"));

/// Puts the batteries' fast paths on `core`.
pub fn install(lua: &Lua, runtime: &Runtime, core: &Table) -> mlua::Result<()> {
    crate::http::install(lua, core)?;
    crate::ws::install(lua, core)?;
    crate::pool::install(lua, runtime, core)
}

/// The builder of battery `name` (`parts.rs`), or `nil`.
pub fn builder(lua: &Lua, name: &[u8]) -> mlua::Result<Value> {
    Ok(match name {
        b"json" => Value::Function(lua.create_function(|lua, ()| crate::json::module(lua))?),
        b"http" => Value::Function(HTTP.function(lua)?),
        b"ws" => Value::Function(WS.function(lua)?),
        b"cluster" => Value::Function(CLUSTER.function(lua)?),
        _ => Value::Nil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_compile() {
        let lua = Lua::new();
        HTTP.function(&lua).unwrap();
        WS.function(&lua).unwrap();
        CLUSTER.function(&lua).unwrap();
    }
}
