//! The TLS bindings: the `tls` option of `lunet.listen` and
//! `lunet.connect` (the layer itself is `lunet_core::tls`).
//!
//! - `core.tls_server(options)` → a server context (userdata), made when
//!   `lunet.listen` is called: a bad certificate or key raises there, so it
//!   is a load error of the script.
//! - `core.tls_accept(conn, context)`: starts the server side on an
//!   accepted connection before its handler runs.
//! - `core.tls_connect(conn, options, addr)` → `true` or `nil, err`:
//!   starts the client side on a connected socket; the prelude then waits
//!   for the handshake (`READ.HANDSHAKE`).
//!
//! Both arm the connection's timer at the handshake's deadline
//! (`handshake_timeout`, default [`DEFAULT_HANDSHAKE_TIMEOUT_MS`]).

use std::sync::Arc;

use lunet_core::tls::{self, Tls, DEFAULT_HANDSHAKE_TIMEOUT_MS};
use lunet_core::Runtime;
use mlua::{AnyUserData, Lua, Table, UserData, Value};

use crate::ids::{ConnectionId, TimerKey};
use crate::state::with_state;

/// What `lunet.listen(addr, {tls = ...})` made: shared by the listener's
/// connections.
struct ServerContext {
    config: Arc<tls::ServerConfig>,
    timeout_ms: u64,
}

impl UserData for ServerContext {}

/// A string option of a `tls` table.
fn text(options: &Table, what: &str, key: &str) -> mlua::Result<Option<String>> {
    match options.raw_get::<Value>(key)? {
        Value::Nil => Ok(None),
        Value::String(s) => Ok(Some(s.to_str()?.to_string())),
        other => Err(mlua::Error::runtime(format!(
            "{what}: tls.{key} must be a string, got {}",
            other.type_name()
        ))),
    }
}

/// `handshake_timeout` in ms, or the default.
fn handshake_timeout(options: &Table, what: &str) -> mlua::Result<u64> {
    match options.raw_get::<Value>("handshake_timeout")? {
        Value::Nil => Ok(DEFAULT_HANDSHAKE_TIMEOUT_MS),
        Value::Integer(ms) if ms > 0 => Ok(ms as u64),
        Value::Number(ms) if ms > 0.0 => Ok(ms.ceil() as u64),
        other => Err(mlua::Error::runtime(format!(
            "{what}: tls.handshake_timeout must be a positive number of ms, got {}",
            other
                .to_string()
                .unwrap_or_else(|_| other.type_name().to_string())
        ))),
    }
}

/// The host of `addr` ("HOST:PORT", "[V6]:PORT"): the default server name.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

pub fn install(lua: &Lua, runtime: &Runtime, core: &Table) -> mlua::Result<()> {
    core.raw_set(
        "tls_server",
        lua.create_function(|_, options: Table| {
            const WHAT: &str = "lunet.listen";
            let required = |key: &str| {
                text(&options, WHAT, key)?.ok_or_else(|| {
                    mlua::Error::runtime(format!(
                        "{WHAT}: tls.{key} is required (a PEM file's path or PEM text)"
                    ))
                })
            };
            let (cert, key) = (required("cert")?, required("key")?);
            let timeout_ms = handshake_timeout(&options, WHAT)?;
            let config = tls::server_config(&cert, &key)
                .map_err(|e| mlua::Error::runtime(format!("{WHAT}: {e}")))?;
            Ok(ServerContext { config, timeout_ms })
        })?,
    )?;

    let accept_runtime = runtime.clone();
    core.raw_set(
        "tls_accept",
        lua.create_function(move |lua, (id, context): (i64, AnyUserData)| {
            let context = context.borrow::<ServerContext>()?;
            let tls = Tls::server(context.config.clone(), context.timeout_ms)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            start(
                lua,
                &accept_runtime,
                ConnectionId::from_lua_integer(id),
                tls,
            )?;
            Ok(())
        })?,
    )?;

    let connect_runtime = runtime.clone();
    core.raw_set(
        "tls_connect",
        lua.create_function(move |lua, (id, options, addr): (i64, Value, String)| {
            const WHAT: &str = "lunet.connect";
            let options = match options {
                Value::Table(options) => options,
                Value::Boolean(true) => lua.create_table()?,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "{WHAT}: tls must be a table or true, got {}",
                        other.type_name()
                    )))
                }
            };
            let verify = match options.raw_get::<Value>("verify")? {
                Value::Nil => true,
                Value::Boolean(verify) => verify,
                other => {
                    return Err(mlua::Error::runtime(format!(
                        "{WHAT}: tls.verify must be a boolean, got {}",
                        other.type_name()
                    )))
                }
            };
            let ca = text(&options, WHAT, "ca")?;
            let server_name =
                text(&options, WHAT, "server_name")?.unwrap_or_else(|| host_of(&addr).to_string());
            let timeout_ms = handshake_timeout(&options, WHAT)?;
            let session = tls::client_config(verify, ca.as_deref())
                .and_then(|config| Tls::client(config, &server_name, timeout_ms));
            match session {
                Ok(tls) => {
                    start(
                        lua,
                        &connect_runtime,
                        ConnectionId::from_lua_integer(id),
                        tls,
                    )?;
                    Ok((true, None))
                }
                Err(e) => Ok((false, Some(e.to_string()))),
            }
        })?,
    )?;
    Ok(())
}

/// Puts `tls` on the connection and arms its timer at the handshake's
/// deadline.
fn start(lua: &Lua, runtime: &Runtime, id: ConnectionId, tls: Tls) -> mlua::Result<()> {
    let deadline = tls.deadline();
    let service = with_state(lua, |state| {
        let entry = state.conns.get_mut(id)?;
        entry.conn.start_tls(tls);
        state.service()
    })?;
    if let Some(service) = service {
        runtime.add_timer(&service, deadline, TimerKey::Connection(id).to_raw());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_default_server_name_is_the_host_of_the_address() {
        assert_eq!(host_of("example.com:443"), "example.com");
        assert_eq!(host_of("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
