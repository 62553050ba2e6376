//! `lunet.http`: an HTTP/1.1 server and client whose parsing and writing
//! happen in Rust (`core::proto::http`), so a Lua handler gets a parsed
//! request in one call. `exchange.rs` is a server connection's state and
//! work, `server.rs` binds it to Lua, `client.rs` is the client's Rust
//! half; `http.lua` is the Lua half (the connection loop, `req`, `res`,
//! the router, `lunet.http.request`), built by `batteries.rs`.

mod client;
mod exchange;
mod server;

pub use client::build_request;
pub use exchange::{upgrade, with_exchange, Exchange};

use mlua::{Lua, Table, Value};

/// The bytes of a header value or a body piece given from Lua: a string
/// or a number (as `tostring` writes it).
pub(crate) fn value_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(f) => Some(f.to_string().into_bytes()),
        _ => None,
    }
}

/// Puts the functions of the server and the client on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    server::install(lua, core)?;
    client::install(lua, core)
}
