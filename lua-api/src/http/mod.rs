//! `lunet.http`: an HTTP/1.1 server and client whose parsing and writing
//! happen in Rust (`core::proto::http`), so a Lua handler gets a parsed
//! request in one call. `exchange.rs` is a server connection's state and
//! work, `server.rs` binds it to Lua, `client.rs` is the client's Rust
//! half; `http.lua` is the Lua half (the connection loop, `req`, `res`,
//! the router, `lunet.http.request`), built by `batteries.rs`.

mod client;
mod exchange;
mod server;

pub use exchange::{upgrade, with_exchange, Exchange};

use mlua::{Lua, Table};

/// Puts the functions of the server and the client on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    server::install(lua, core)?;
    client::install(lua, core)
}
