//! Outbound connection pools.

use mlua::{Lua, Table};

pub fn install(_lua: &Lua, _core: &Table) -> mlua::Result<()> {
    Ok(())
}
