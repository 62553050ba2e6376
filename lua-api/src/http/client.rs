//! The client half of `lunet.http` (see `http.lua`).

use mlua::{Lua, Table};

pub fn install(_lua: &Lua, _core: &Table) -> mlua::Result<()> {
    Ok(())
}
