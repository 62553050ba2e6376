//! lunet-lua: the Lua side of lunet. A service is one Lua 5.4 VM
//! ([`host::LuaService`]) whose sessions are coroutines; the `lunet` module
//! and the socket API are built here on lunet-core.

mod api;
mod codec;
mod dict;
pub mod host;
mod ids;
mod interrupt;
pub mod lane;
mod mail;
pub mod protocol;
mod read;
mod settings;
mod slab;
mod state;

pub use host::{check_script, LuaService, Script, ServiceOptions};

/// The kind byte of the message that starts a service's main chunk
/// ([`protocol::MessageKind::Start`]), for embedders that post it themselves.
pub const KIND_START: u8 = protocol::MessageKind::Start as u8;
pub use settings::Settings;

/// The mlua this crate is built on, for embedders that add their own modules.
pub use mlua;
