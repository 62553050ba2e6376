//! lunet-lua: the Lua side of lunet. A service is one Lua 5.4 VM
//! ([`LuaService`]) whose sessions are coroutines; the `lunet` module and
//! the socket API are built here on lunet-core.
//!
//! Layout (see `docs/internals.md`): `protocol.rs` (the codes both halves
//! share), `ids.rs` (typed ids), `state.rs` (what a VM owns), `host/` (the
//! scheduler of a VM), `api/` (the Rust half of the `lunet` module),
//! `launch.rs` (starting services from a script), `admin/` (the console
//! and `/metrics`, a system service without Lua), `model/` (the runtime
//! model: modules, Subs, events, groups, state and storage).

pub mod admin;
mod api;
mod batteries;
pub mod caps;
pub mod cluster;
mod codec;
mod dict;
mod dict_fast;
mod globals;
mod handoff;
mod host;
mod http;
mod ids;
mod interrupt;
pub mod json;
mod lane;
mod launch;
mod libraries;
mod mail;
mod memory;
mod model;
mod parts;
mod pool;
pub mod protocol;
mod raw;
mod read;
mod redis;
mod settings;
mod slab;
mod state;
mod tls;
mod ws;

pub use host::{
    check_script, BuildError, LuaService, Script, ScriptError, ServiceOptions, StartError, Startup,
};
pub use http::build_request;
pub use launch::{launch, Launch, LaunchError, Progress};
pub use settings::Settings;

/// The message codec between services, for the fuzz targets in `fuzz/`
/// only: not a stable API.
#[doc(hidden)]
pub use codec::{decode as decode_message, encode as encode_message, SocketMeta};

/// The mlua this crate is built on, for embedders that add their own modules.
pub use mlua;
