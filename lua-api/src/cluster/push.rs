//! `lunet modules push DIR --cluster URL`: the modules of a directory
//! (module `a.b` is `a/b.lua`, as on a module path) stored in the
//! cluster's module store, where nodes that lack one fetch it
//! (docs/cluster.md, the meta-server).
//!
//! 1. Each file's version is the one its `lunet.module{...}` declares: the
//!    file runs in a bare VM until that call (module files call it first),
//!    and nothing else of it runs.
//! 2. The process joins the cluster as a node of its own and a trusted
//!    service pushes each module through `lunet.cluster.push`, printing
//!    `pushed NAME VERSION`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lunet_core::Runtime;
use mlua::{Lua, Table};

use crate::host::Script;
use crate::launch::launch;
use crate::settings::Settings;

/// A module file to push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {message}")]
    Module { path: String, message: String },
    #[error("{0}: no module file (*.lua) in it")]
    Empty(String),
    #[error(transparent)]
    Join(#[from] super::JoinError),
    #[error("the push failed: {0}")]
    Failed(String),
}

/// Every `*.lua` under `dir`, with its module name and declared version,
/// sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<ModuleFile>, PushError> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    if files.is_empty() {
        return Err(PushError::Empty(dir.display().to_string()));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<ModuleFile>) -> Result<(), PushError> {
    let read = |error| PushError::Read {
        path: dir.display().to_string(),
        error,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        paths.push(entry.map_err(read)?.path());
    }
    // In order: the first file that is no module is the one named.
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("lua") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
        let name = relative
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join(".");
        let source = std::fs::read(&path).map_err(|error| PushError::Read {
            path: path.display().to_string(),
            error,
        })?;
        let version = declared_version(&name, &source).map_err(|message| PushError::Module {
            path: path.display().to_string(),
            message,
        })?;
        files.push(ModuleFile {
            name,
            version,
            path,
        });
    }
    Ok(())
}

/// Step 1: the version `source`'s `lunet.module{...}` declares.
fn declared_version(name: &str, source: &[u8]) -> Result<String, String> {
    const STOP: &str = "lunet modules push: the manifest was read";
    let lua = Lua::new();
    let manifest: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let seen = manifest.clone();
    let run = || -> mlua::Result<()> {
        let lunet = lua.create_table()?;
        lunet.set(
            "module",
            lua.create_function(move |_, table: Table| {
                let name: String = table.get("name").unwrap_or_default();
                let version: String = table.get("version").unwrap_or_default();
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((name, version));
                Err::<(), _>(mlua::Error::runtime(STOP))
            })?,
        )?;
        lua.globals().set("lunet", lunet)?;
        lua.load(source)
            .set_name(format!("@{name}"))
            .set_mode(mlua::chunk::ChunkMode::Text)
            .exec()
    };
    let outcome = run();
    let declared = manifest.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (declared, outcome) {
        (Some((declared, version)), _) if declared == name && !version.is_empty() => Ok(version),
        (Some((declared, _)), _) if declared != name => Err(format!(
            "its lunet.module{{}} declares name = '{declared}', expected '{name}'"
        )),
        (Some(_), _) => Err("its lunet.module{} declares no version".to_string()),
        (None, Err(e)) => Err(format!("does not reach lunet.module{{}}: {e}")),
        (None, Ok(())) => Err("does not call lunet.module{...}".to_string()),
    }
}

/// Step 2: joins the cluster at `url` and pushes `modules`; the lines it
/// printed are on stdout.
pub fn push(
    runtime: &Runtime,
    settings: &Arc<Settings>,
    url: &str,
    modules: &[ModuleFile],
) -> Result<(), PushError> {
    let config = super::ClusterConfig {
        url: url.to_string(),
        node: format!("push-{}", std::process::id()),
    };
    super::start(runtime, settings, &config)?;
    let list: Vec<String> = modules
        .iter()
        .map(|m| {
            format!(
                "{{ {:?}, {:?}, {:?} }}",
                m.name,
                m.version,
                m.path.display().to_string()
            )
        })
        .collect();
    let source = format!(
        r#"local lunet = require "lunet"
for _, m in ipairs({{ {} }}) do
    local file = assert(io.open(m[3], "rb"))
    local source = file:read("a")
    file:close()
    lunet.cluster.push(m[1], m[2], source)
    print("pushed " .. m[1] .. " " .. m[2])
end
"#,
        list.join(", ")
    );
    let script = Script {
        path: "lunet/modules-push".to_string(),
        source: source.into_bytes(),
    };
    let mut pushing = launch(
        runtime,
        &script,
        settings,
        &["push".to_string()],
        &|_, _| Ok(()),
    )
    .map_err(|e| PushError::Failed(e.to_string()))?;
    match pushing.wait(Some(Duration::from_secs(60))) {
        Ok(crate::launch::Progress::Started) => Ok(()),
        Ok(_) => Err(PushError::Failed("no answer within 60 s".to_string())),
        Err(e) => Err(PushError::Failed(
            e.message
                .split("\nstack traceback:")
                .next()
                .unwrap_or_default()
                .to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_version_is_read_without_running_the_module() {
        let source =
            b"local M = lunet.module { name = \"a.b\", version = \"1.2\" }\nerror('never')";
        assert_eq!(declared_version("a.b", source).unwrap(), "1.2");
        let other = b"lunet.module { name = \"x\", version = \"1\" }";
        assert!(declared_version("a.b", other)
            .unwrap_err()
            .contains("expected 'a.b'"));
        assert!(declared_version("a.b", b"return 1")
            .unwrap_err()
            .contains("does not call"));
        assert!(declared_version("a.b", b"syntax error here").is_err());
        let none = b"lunet.module { name = \"a.b\" }";
        assert!(declared_version("a.b", none)
            .unwrap_err()
            .contains("no version"));
    }
}
