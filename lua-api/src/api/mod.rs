//! The Rust half of the `lunet` module: the fast paths the Lua wrappers in
//! `prelude.lua` call. None of these yields; a wrapper yields when one says
//! `false` (must wait).
//!
//! Every callback reaches the VM's state once, through
//! [`with_state`](crate::state::with_state), and makes Lua values only
//! after that borrow ended. Socket methods are in `socket.rs`, the actor
//! calls in `services.rs`; the rest is here.

mod services;
mod socket;
mod write;

pub(crate) use services::{encode_message, target, target_error};
pub use socket::{admit, connect_word, queued, Queued};

use std::sync::Arc;

use lunet_core::{now_ms, Runtime};
use mlua::{FromLua, Function, Lua, MultiValue, Table, Value};

use crate::caps::{self, Capability, Caps};

use crate::codec::SocketMeta;
use crate::settings::Settings;
use crate::state::{with_state, Fork};

/// The levels of `lunet.log`, most severe first.
const LOG_LEVELS: [(&str, tracing::Level); 5] = [
    ("error", tracing::Level::ERROR),
    ("warn", tracing::Level::WARN),
    ("info", tracing::Level::INFO),
    ("debug", tracing::Level::DEBUG),
    ("trace", tracing::Level::TRACE),
];

/// Builds the table of Rust functions handed to `prelude.lua`, with
/// `socket_meta`, the metatable of socket objects (the prelude fills in
/// the methods), as `core.Socket`.
pub fn build(
    lua: &Lua,
    runtime: &Runtime,
    settings: &Arc<Settings>,
    socket_meta: &Table,
    caps: &Caps,
) -> mlua::Result<Table> {
    let core = lua.create_table()?;
    crate::protocol::install(lua, &core)?;
    core.set("Socket", socket_meta)?;
    // The prelude refuses with these before it looks at arguments; the
    // Rust halves below check again (see `caps.rs`).
    core.set("HELD", caps.held_table(lua)?)?;
    core.set("switch", crate::interrupt::switch_function(lua)?)?;

    socket::build(lua, runtime, &core)?;
    crate::redis::install(lua, &core)?;
    crate::tls::install(lua, runtime, &core)?;

    let env = settings.clone();
    core.set(
        "getenv",
        lua.create_function(move |lua, (key, default): (Value, Value)| {
            caps::require(lua, Capability::Env, "lunet.getenv")?;
            let Value::String(key) = key else {
                return Err(mlua::Error::runtime(format!(
                    "lunet.getenv: the key must be a string, got {}",
                    key.type_name()
                )));
            };
            Ok(match env.env.get(&*key.to_str()?) {
                Some(v) => Value::String(lua.create_string(v)?),
                None => default,
            })
        })?,
    )?;

    core.set("now", lua.create_function(|_, ()| Ok(now_ms() as i64))?)?;

    // The wrapper in prelude.lua checks the level against `core.LOG_LEVELS`
    // and joins the values as `print` does; this only writes the line.
    let levels = lua.create_table_with_capacity(0, LOG_LEVELS.len())?;
    for (name, _) in &LOG_LEVELS {
        levels.raw_set(*name, true)?;
    }
    core.set("LOG_LEVELS", levels)?;
    let names: Vec<&str> = LOG_LEVELS.iter().map(|(name, _)| *name).collect();
    core.set("LOG_LEVEL_NAMES", names.join(", "))?;
    core.set(
        "log",
        lua.create_function(|_, (level, message): (mlua::LuaString, mlua::LuaString)| {
            let level = LOG_LEVELS
                .iter()
                .find(|(name, _)| level.as_bytes() == name.as_bytes())
                .map(|(_, level)| *level)
                .ok_or_else(|| mlua::Error::runtime("lunet.log: unknown level"))?;
            let message = message.to_string_lossy();
            match level {
                tracing::Level::ERROR => tracing::error!(target: "lua", "{message}"),
                tracing::Level::WARN => tracing::warn!(target: "lua", "{message}"),
                tracing::Level::INFO => tracing::info!(target: "lua", "{message}"),
                tracing::Level::DEBUG => tracing::debug!(target: "lua", "{message}"),
                _ => tracing::trace!(target: "lua", "{message}"),
            }
            Ok(())
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "listen",
        lua.create_function(move |lua, addr: Value| {
            caps::require(lua, Capability::Listen, "lunet.listen")?;
            let addr = String::from_lua(addr, lua)?;
            let (service, key) = with_state(lua, |state| {
                let count = state.listen_calls.entry(addr.clone()).or_insert(0);
                *count += 1;
                let key = format!("{addr}#{count}");
                (state.service(), key)
            })?;
            let service =
                service.ok_or_else(|| mlua::Error::runtime("lunet.listen: no service"))?;
            match rt.listen(&addr, &key, &service) {
                Ok((id, bound)) => Ok((id, bound.to_string())),
                Err(e) => Err(mlua::Error::runtime(format!("lunet.listen {addr}: {e}"))),
            }
        })?,
    )?;

    core.set(
        "fork",
        lua.create_function(|lua, (function, args): (Function, MultiValue)| {
            Ok(with_state(lua, |state| {
                state.forks.push(Fork { function, args })
            })?)
        })?,
    )?;

    // A hook registered while the service already drains runs at once.
    core.set(
        "on_shutdown",
        lua.create_function(|lua, hook: Function| {
            Ok(with_state(lua, |state| {
                if state.draining {
                    state.forks.push(Fork {
                        function: hook,
                        args: MultiValue::new(),
                    });
                } else {
                    state.shutdown_hooks.push(hook);
                }
            })?)
        })?,
    )?;

    core.set("shared_dict", lua.create_function(crate::dict::open)?)?;
    crate::batteries::install(lua, runtime, &core)?;
    services::build(lua, runtime, settings, SocketMeta::of(socket_meta), &core)?;
    crate::model::install_loader(lua, runtime, SocketMeta::of(socket_meta), &core)?;
    crate::cluster::install(lua, runtime, SocketMeta::of(socket_meta), &core)?;

    Ok(core)
}
