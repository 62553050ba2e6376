//! lunet-lua: the Lua side of lunet. A service is one Lua 5.4 VM
//! ([`host::LuaService`]) whose sessions are coroutines; the `lunet` module
//! and the socket API are built here on lunet-core.

mod api;
mod codec;
mod dict;
pub mod host;
mod interrupt;
pub mod json;
pub mod lane;
mod services;
mod slab;
pub mod state;

pub use host::{check_script, LuaService, Script, ServiceOptions, KIND_START};
pub use state::Settings;

/// The message codec between services, for the fuzz targets in `fuzz/`
/// only: not a stable API.
#[doc(hidden)]
pub use codec::{decode as decode_message, encode as encode_message};

/// The mlua this crate is built on, for embedders that add their own modules.
pub use mlua;
