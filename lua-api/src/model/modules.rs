//! The module manager's process-wide half: where a module's file is, its
//! compiled code, which version of each module the process knows, and
//! which runtime runs which module. The per-runtime half (what a runtime
//! loaded, its Subs and events) is `ModelState` (`mod.rs`); the loading
//! order, dependencies and their chains are `model.lua`'s.
//!
//! Protocol:
//! 1. A module named `a.b` is the file `a/b.lua` in the first directory of
//!    the module path (`--modules DIR`, repeatable; default `modules/`
//!    next to the script) that has it ([`find`]).
//! 2. Its code is compiled once per process: the first runtime that loads
//!    it compiles the text (never a binary chunk) and keeps the bytecode,
//!    debug info included (tracebacks name its lines); every runtime,
//!    that one included, loads the bytecode into its own VM with the
//!    module's own environment as `_ENV` ([`chunk`]). A VM still holds its
//!    own copy of the functions: Lua cannot share them between states.
//! 3. The cache changes only by [`recompile`] (the console's `reload
//!    MODULE`): a file edited on disk is seen by a reload, not by the next
//!    spawn, as skynet's code cache.
//! 4. A runtime that has loaded a module reports it ([`note_running`]):
//!    the version becomes the one `lunet.sub` uses where the module is not
//!    loaded, and the console lists it. [`forget`] drops a runtime's
//!    modules when it exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, Table};

use super::subs::{check_module_name, NameError};

/// Why a module could not be found or compiled.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("module {name} not found: searched {searched}")]
    NotFound { name: String, searched: String },
    #[error("module {name}: cannot read {path}: {error}")]
    Read {
        name: String,
        path: String,
        error: std::io::Error,
    },
    #[error("module {name} does not compile: {error}")]
    Compile { name: String, error: mlua::Error },
    #[error("no runtime has loaded module {0}")]
    NotLoaded(String),
}

/// A module's code, compiled once (step 2).
struct Compiled {
    chunk_name: String,
    bytecode: Vec<u8>,
}

/// The last version of a module a runtime loaded (step 4).
struct Known {
    version: String,
    path: PathBuf,
    subs: Vec<String>,
}

#[derive(Default)]
struct Registry {
    compiled: HashMap<PathBuf, Arc<Compiled>>,
    known: HashMap<String, Known>,
    /// Each runtime's modules, `(name, version)` in load order.
    running: HashMap<u64, Vec<(String, String)>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file of `name` in the directories of `search` (step 1).
pub fn find(name: &str, search: &[PathBuf]) -> Result<PathBuf, ModuleError> {
    check_module_name(name)?;
    let relative: PathBuf = format!("{}.lua", name.replace('.', "/")).into();
    let mut searched = Vec::with_capacity(search.len());
    for dir in search {
        let path = dir.join(&relative);
        if path.is_file() {
            return Ok(path);
        }
        searched.push(path.display().to_string());
    }
    // In a cluster, then among the modules fetched from its store.
    if let Some(dir) = crate::cluster::fetched_modules() {
        let path = dir.join(&relative);
        if path.is_file() {
            return Ok(path);
        }
    }
    Err(ModuleError::NotFound {
        name: name.to_string(),
        searched: if searched.is_empty() {
            "nothing (the module path is empty)".to_string()
        } else {
            searched.join(", ")
        },
    })
}

fn compile(lua: &Lua, name: &str, path: &Path) -> Result<Arc<Compiled>, ModuleError> {
    let source = std::fs::read(path).map_err(|error| ModuleError::Read {
        name: name.to_string(),
        path: path.display().to_string(),
        error,
    })?;
    let chunk_name = format!("@{}", path.display());
    let function = lua
        .load(&source[..])
        .set_name(&chunk_name)
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|error| ModuleError::Compile {
            name: name.to_string(),
            error,
        })?;
    Ok(Arc::new(Compiled {
        chunk_name,
        bytecode: function.dump(false),
    }))
}

/// Module `name`'s main chunk in `lua`, with `env` as its `_ENV` (step 2),
/// and the file it comes from.
pub fn chunk(
    lua: &Lua,
    name: &str,
    search: &[PathBuf],
    env: Table,
) -> Result<(Function, PathBuf), ModuleError> {
    let path = find(name, search)?;
    let cached = registry().compiled.get(&path).cloned();
    let compiled = match cached {
        Some(compiled) => compiled,
        None => {
            // Compiled outside the lock; if two runtimes race, the first
            // one in keeps its code and the other's is dropped.
            let fresh = compile(lua, name, &path)?;
            registry()
                .compiled
                .entry(path.clone())
                .or_insert(fresh)
                .clone()
        }
    };
    let function = lua
        .load(&compiled.bytecode[..])
        .set_name(&compiled.chunk_name)
        .set_mode(ChunkMode::Binary)
        .set_environment(env)
        .into_function()
        .map_err(|error| ModuleError::Compile {
            name: name.to_string(),
            error,
        })?;
    Ok((function, path))
}

/// Step 3: compiles module `name` again from the file its runtimes loaded
/// it from; on success the new code replaces the old for every later load.
/// A file that does not compile leaves the old code in place.
pub fn recompile(name: &str) -> Result<PathBuf, ModuleError> {
    let path = registry()
        .known
        .get(name)
        .map(|known| known.path.clone())
        .ok_or_else(|| ModuleError::NotLoaded(name.to_string()))?;
    let compiled = compile(&Lua::new(), name, &path)?;
    registry().compiled.insert(path.clone(), compiled);
    Ok(path)
}

/// Step 4: runtime `service` runs `name` at `version`, from `path`, with
/// these Subs.
pub fn note_running(service: u64, name: &str, version: &str, path: &Path, subs: Vec<String>) {
    let mut registry = registry();
    registry.known.insert(
        name.to_string(),
        Known {
            version: version.to_string(),
            path: path.to_path_buf(),
            subs,
        },
    );
    let modules = registry.running.entry(service).or_default();
    match modules.iter_mut().find(|(running, _)| running == name) {
        Some(entry) => entry.1 = version.to_string(),
        None => modules.push((name.to_string(), version.to_string())),
    }
}

/// Step 4: runtime `service` has exited.
pub fn forget(service: u64) {
    registry().running.remove(&service);
}

/// The modules `service` runs, as the console lists them: `a@1.0,b@2`.
pub fn running_text(service: u64) -> String {
    registry()
        .running
        .get(&service)
        .map(|modules| {
            modules
                .iter()
                .map(|(name, version)| format!("{name}@{version}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The runtimes that run module `name`, by handle.
pub fn users(name: &str) -> Vec<u64> {
    let mut users: Vec<u64> = registry()
        .running
        .iter()
        .filter(|(_, modules)| modules.iter().any(|(running, _)| running == name))
        .map(|(service, _)| *service)
        .collect();
    users.sort_unstable();
    users
}

/// The version of `name` a runtime of this process loaded last, and
/// whether it has a Sub called `sub`.
pub fn known_version(name: &str, sub: &str) -> Option<(String, bool)> {
    registry()
        .known
        .get(name)
        .map(|known| (known.version.clone(), known.subs.iter().any(|s| s == sub)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lunet-modules-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        dir
    }

    #[test]
    fn a_module_is_found_on_the_path_and_compiled_once() {
        let dir = temp_dir("once");
        let file = dir.join("a/b.lua");
        std::fs::write(&file, "return x + 1").unwrap();
        let search = vec![dir.join("missing"), dir.clone()];
        assert_eq!(find("a.b", &search).unwrap(), file);
        let error = find("a.c", &search).unwrap_err().to_string();
        assert!(error.contains("module a.c not found"), "{error}");
        assert!(error.contains("a/c.lua"), "{error}");
        assert!(find("../a", &search).is_err());

        let lua = Lua::new();
        let env = lua.create_table().unwrap();
        env.set("x", 41).unwrap();
        let (function, path) = chunk(&lua, "a.b", &search, env).unwrap();
        assert_eq!(path, file);
        assert_eq!(function.call::<i64>(()).unwrap(), 42);
        // The file changes; the cache does not until a recompile.
        std::fs::write(&file, "return x + 2").unwrap();
        let env = lua.create_table().unwrap();
        env.set("x", 41).unwrap();
        let (function, _) = chunk(&lua, "a.b", &search, env.clone()).unwrap();
        assert_eq!(function.call::<i64>(()).unwrap(), 42);
        note_running(u64::MAX, "a.b", "1", &file, vec!["s".into()]);
        assert_eq!(known_version("a.b", "s"), Some(("1".to_string(), true)));
        assert_eq!(running_text(u64::MAX), "a.b@1");
        assert!(users("a.b").contains(&u64::MAX));
        recompile("a.b").unwrap();
        let (function, _) = chunk(&lua, "a.b", &search, env).unwrap();
        assert_eq!(function.call::<i64>(()).unwrap(), 43);
        // A file that does not compile leaves the old code.
        std::fs::write(&file, "return (").unwrap();
        let error = recompile("a.b").unwrap_err().to_string();
        assert!(error.contains("does not compile"), "{error}");
        forget(u64::MAX);
        assert_eq!(running_text(u64::MAX), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
