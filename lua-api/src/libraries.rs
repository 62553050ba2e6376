//! Where `require` looks: `package.path` and `package.cpath` of every VM.
//!
//! The default path, in order (the same in every service of a server, so
//! spawned services find what the main script finds):
//!
//! 1. the directory of the script given on the command line (so a
//!    `json.lua` next to the script is found from any working directory);
//! 2. `lua_modules/` next to the script, as `luarocks --tree lua_modules`
//!    lays it out (`share/lua/5.4/`, `lib/lua/5.4/` for C modules);
//! 3. the system's Lua 5.4 directories (`/usr/local/share/lua/5.4`,
//!    `/usr/share/lua/5.4`, and their `lib/` twins for C modules, Debian's
//!    multiarch one included).
//!
//! `LUA_PATH_5_4` (or else `LUA_PATH`) and `LUA_CPATH_5_4` (or else
//! `LUA_CPATH`) replace it as in `lua`: a `;;` in them stands for the
//! default. The working directory is not searched unless they say so.
//!
//! C modules need the Lua C API from the binary: the `lunet` binary exports
//! it (the root crate's `build.rs`).

use std::path::{Path, PathBuf};

use mlua::{Lua, Table};

use crate::settings::Settings;

/// The Lua version of the directories searched.
const VERSION: &str = "5.4";

/// Debian's multiarch directory name for this target (where its Lua C
/// modules live: `/usr/lib/<triplet>/lua/5.4`).
fn multiarch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "x86" => Some("i386-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        "riscv64" => Some("riscv64-linux-gnu"),
        "powerpc64" if cfg!(target_endian = "little") => Some("powerpc64le-linux-gnu"),
        "s390x" => Some("s390x-linux-gnu"),
        _ => None,
    }
}

/// The directory of the command-line script, absolute (`""` for a script
/// in the working directory means the working directory).
fn script_directory(settings: &Settings) -> Option<PathBuf> {
    let dir = settings.script_dir.as_deref()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).ok()
}

/// The default `package.path` and `package.cpath` for a script in `dir`.
pub fn default_paths(dir: Option<&Path>) -> (String, String) {
    let mut lua = Vec::new();
    let mut c = Vec::new();
    if let Some(dir) = dir {
        let dir = dir.display();
        lua.push(format!("{dir}/?.lua"));
        lua.push(format!("{dir}/?/init.lua"));
        lua.push(format!("{dir}/lua_modules/share/lua/{VERSION}/?.lua"));
        lua.push(format!("{dir}/lua_modules/share/lua/{VERSION}/?/init.lua"));
        c.push(format!("{dir}/?.so"));
        c.push(format!("{dir}/lua_modules/lib/lua/{VERSION}/?.so"));
    }
    for share in ["/usr/local/share/lua", "/usr/share/lua"] {
        lua.push(format!("{share}/{VERSION}/?.lua"));
        lua.push(format!("{share}/{VERSION}/?/init.lua"));
    }
    c.push(format!("/usr/local/lib/lua/{VERSION}/?.so"));
    if let Some(triplet) = multiarch() {
        c.push(format!("/usr/lib/{triplet}/lua/{VERSION}/?.so"));
    }
    c.push(format!("/usr/lib/lua/{VERSION}/?.so"));
    (lua.join(";"), c.join(";"))
}

/// What `lua` makes of an environment path: the first `;;` stands for the
/// default (Lua 5.4's `setpath`).
pub fn expand(from_environment: &str, default: &str) -> String {
    match from_environment.find(";;") {
        None => from_environment.to_string(),
        Some(at) => {
            let (before, after) = (&from_environment[..at], &from_environment[at + 2..]);
            let mut path = String::with_capacity(from_environment.len() + default.len() + 2);
            path.push_str(before);
            if !before.is_empty() {
                path.push(';');
            }
            path.push_str(default);
            if !after.is_empty() {
                path.push(';');
                path.push_str(after);
            }
            path
        }
    }
}

/// `NAME_5_4`, or else `NAME`, from the environment.
fn from_environment(name: &str) -> Option<String> {
    std::env::var(format!("{name}_5_4"))
        .or_else(|_| std::env::var(name))
        .ok()
}

/// Sets `package.path` and `package.cpath` of a fresh VM. A VM without
/// `package` (none is built that way today) is left alone.
pub fn install(lua: &Lua, settings: &Settings) -> mlua::Result<()> {
    let Ok(package) = lua.globals().raw_get::<Table>("package") else {
        return Ok(());
    };
    let (lua_default, c_default) = default_paths(script_directory(settings).as_deref());
    let path = match from_environment("LUA_PATH") {
        Some(value) => expand(&value, &lua_default),
        None => lua_default,
    };
    let cpath = match from_environment("LUA_CPATH") {
        Some(value) => expand(&value, &c_default),
        None => c_default,
    };
    package.raw_set("path", path)?;
    package.raw_set("cpath", cpath)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_directory_comes_first_then_lua_modules_then_the_system() {
        let (path, cpath) = default_paths(Some(Path::new("/srv/app")));
        let entries: Vec<&str> = path.split(';').collect();
        assert_eq!(entries[0], "/srv/app/?.lua");
        assert_eq!(entries[1], "/srv/app/?/init.lua");
        assert_eq!(entries[2], "/srv/app/lua_modules/share/lua/5.4/?.lua");
        assert!(entries.contains(&"/usr/share/lua/5.4/?.lua"));
        assert!(!entries.iter().any(|entry| entry.starts_with("./")));
        let entries: Vec<&str> = cpath.split(';').collect();
        assert_eq!(entries[0], "/srv/app/?.so");
        assert_eq!(entries[1], "/srv/app/lua_modules/lib/lua/5.4/?.so");
        assert_eq!(entries.last(), Some(&"/usr/lib/lua/5.4/?.so"));
    }

    #[test]
    fn a_double_semicolon_stands_for_the_default() {
        assert_eq!(expand("/x/?.lua", "D"), "/x/?.lua");
        assert_eq!(expand("/x/?.lua;;", "D"), "/x/?.lua;D");
        assert_eq!(expand(";;/x/?.lua", "D"), "D;/x/?.lua");
        assert_eq!(expand("/a;;/b", "D"), "/a;D;/b");
        assert_eq!(expand(";;", "D"), "D");
        // Only the first one, as Lua does.
        assert_eq!(expand("/a;;/b;;", "D"), "/a;D;/b;;");
    }
}
