//! The Rust half of the `lunet` module: the fast paths the Lua wrappers in
//! `prelude.lua` call. None of these yields; a wrapper yields when one says
//! `false` (must wait).
//!
//! Every callback reaches the VM's state once, through
//! [`with_state`](crate::state::with_state), and makes Lua values only
//! after that borrow ended. Socket methods are in `socket.rs`, the actor
//! calls in `services.rs`; the rest is here.

mod send;
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

/// What the groups of `core` are made with.
struct Context {
    runtime: Runtime,
    settings: Arc<Settings>,
    socket_meta: Table,
    caps: Caps,
}

/// Members of `core` made together, the first time one of them is read.
struct Group {
    names: &'static [&'static str],
    install: fn(&Lua, &Context, &Table) -> mlua::Result<()>,
    /// Keep only the member read: the group is made in a scratch table,
    /// and what is not kept is garbage (for groups of independent
    /// functions of which a VM typically uses one or two).
    single: bool,
}

/// The groups of `core`: every name a part of the Lua side reads.
const GROUPS: &[Group] = &[
    Group {
        names: &["OP", "READ", "LANE"],
        install: |lua, _, core| crate::protocol::install(lua, core),
        single: false,
    },
    Group {
        // The prelude refuses with these before it looks at arguments; the
        // Rust halves check again (see `caps.rs`).
        names: &["HELD"],
        install: |lua, context, core| core.raw_set("HELD", context.caps.held_table(lua)?),
        single: false,
    },
    Group {
        names: &["switch"],
        install: |lua, _, core| core.raw_set("switch", crate::interrupt::switch_function(lua)?),
        single: false,
    },
    Group {
        names: &[
            "read",
            "read_value",
            "write",
            "close",
            "collected",
            "peer",
            "settimeout",
            "connect",
        ],
        install: |lua, context, core| socket::build(lua, &context.runtime, core),
        single: false,
    },
    Group {
        names: &["readresp", "redis_connect_allowed", "null"],
        install: |lua, _, core| crate::redis::install(lua, core),
        single: false,
    },
    Group {
        names: &["tls_server", "tls_accept", "tls_connect"],
        install: |lua, context, core| crate::tls::install(lua, &context.runtime, core),
        single: false,
    },
    Group {
        names: &[
            "getenv",
            "now",
            "LOG_LEVELS",
            "LOG_LEVEL_NAMES",
            "log",
            "listen",
            "fork",
            "on_shutdown",
            "shared_dict",
            "library_paths",
        ],
        install: |lua, context, core| misc(lua, &context.runtime, &context.settings, core),
        single: true,
    },
    Group {
        names: &[
            "http_config",
            "http_begin",
            "http_bind",
            "http_body",
            "http_status",
            "http_header",
            "http_write",
            "http_fail",
            "http_url",
            "http_write_request",
            "http_reader",
            "http_response",
            "ws_state",
            "ws_upgrade",
            "ws_recv",
            "ws_send",
            "ws_close",
            "ws_closed",
            "ws_request",
            "ws_accept",
            "setkeepalive",
            "pool_take",
        ],
        install: |lua, context, core| crate::batteries::install(lua, &context.runtime, core),
        single: false,
    },
    Group {
        names: &[
            "self",
            "send",
            "call",
            "spawn",
            "exit",
            "kill",
            "register",
            "query",
            "set_dispatch",
            "response",
            "wakeup",
        ],
        install: |lua, context, core| {
            services::build(
                lua,
                &context.runtime,
                &context.settings,
                SocketMeta::of(&context.socket_meta),
                core,
            )
        },
        single: true,
    },
    Group {
        // The runtime model (`model/`): `load_model` brings the rest.
        names: &["load_model"],
        install: |lua, context, core| {
            crate::model::install_loader(
                lua,
                &context.runtime,
                SocketMeta::of(&context.socket_meta),
                core,
            )
        },
        single: false,
    },
    Group {
        names: &[
            "cluster_request",
            "cluster_spans",
            "cluster_group",
            "module_fetch",
            "cluster_ref",
            "cluster_node",
            "cluster_internals",
        ],
        install: |lua, context, core| {
            crate::cluster::install(
                lua,
                &context.runtime,
                SocketMeta::of(&context.socket_meta),
                core,
            )
        },
        single: false,
    },
];

/// Builds the table of Rust functions handed to `prelude.lua`: its members
/// are made on first read (`GROUPS`), except `Socket` (`socket_meta`, the
/// metatable of socket objects, whose methods the prelude fills in) and
/// what the prelude needs to start (`globals.rs`, `parts.rs`).
pub fn build(
    lua: &Lua,
    runtime: &Runtime,
    settings: &Arc<Settings>,
    socket_meta: &Table,
    caps: &Caps,
) -> mlua::Result<Table> {
    let core = lua.create_table()?;
    core.raw_set("Socket", socket_meta)?;
    crate::globals::put(lua, &core)?;
    crate::parts::install(lua, &core)?;
    let context = Context {
        runtime: runtime.clone(),
        settings: settings.clone(),
        socket_meta: socket_meta.clone(),
        caps: caps.clone(),
    };
    // Groups made so far, one bit each.
    let made = std::cell::Cell::new(0u32);
    let fill = lua.create_function(move |lua, (core, name): (Table, Value)| {
        let Value::String(name) = name else {
            return Ok(Value::Nil);
        };
        let name = name.to_str()?;
        let Some(index) = GROUPS
            .iter()
            .position(|group| group.names.contains(&&*name))
        else {
            return Ok(Value::Nil);
        };
        let group = &GROUPS[index];
        if group.single {
            let scratch = lua.create_table()?;
            (group.install)(lua, &context, &scratch)?;
            let value: Value = scratch.raw_get(&*name)?;
            core.raw_set(&*name, &value)?;
            return Ok(value);
        }
        if made.get() & (1 << index) == 0 {
            made.set(made.get() | (1 << index));
            (group.install)(lua, &context, &core)?;
        }
        core.raw_get(&*name)
    })?;
    let meta = lua.create_table_with_capacity(0, 1)?;
    meta.raw_set("__index", fill)?;
    core.set_metatable(Some(meta))?;
    Ok(core)
}

/// The `misc` group: environment, clock, log, listen, fork, shutdown
/// hooks, shared dicts, library paths.
fn misc(lua: &Lua, runtime: &Runtime, settings: &Arc<Settings>, core: &Table) -> mlua::Result<()> {
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
    let paths = settings.clone();
    core.set(
        "library_paths",
        lua.create_function(move |lua, ()| crate::libraries::install(lua, &paths))?,
    )?;
    Ok(())
}
