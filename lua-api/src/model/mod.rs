//! The runtime model (seed 000; docs/runtime-model.md): modules, Subs,
//! events, groups, and the state and storage interfaces, built on
//! services. A *runtime* is a service spawned with modules and declared
//! capabilities (`lunet.spawn{modules = {...}, state = true, ...}`).
//!
//! Rooms:
//! - `modules.rs`: the module manager's process-wide half (files, code
//!   compiled once per process, who runs what);
//! - `manager.rs`: its per-runtime half, the bindings `model.lua` loads
//!   modules with;
//! - `subs.rs`: Sub ids and references, names, the upvalue check;
//! - `events.rs`: define, fire, attach (here, from outside, to a group);
//! - `groups.rs`: the process-wide group directory and the group calls;
//! - `state_store.rs`: the state and storage interfaces;
//! - `model.lua`: the Lua half (`lunet.module`, the loader, `M.sub`, ...).
//!
//! Protocol:
//! 1. A runtime's main chunk is `model.lua`'s `start_runtime`: it reads the
//!    saved state (if declared), loads each module of `spawn{modules=}`
//!    with its dependencies (a failure fails the spawn with the module's
//!    error and traceback), then runs the script, if one was given. The
//!    runtime's name is taken at spawn, before that: Sub messages and
//!    attachments that arrive while it starts wait (`LuaService::early`)
//!    until its modules are loaded (`ready`), then run in arrival order.
//! 2. Loading a module runs its file in an environment of its own; what it
//!    declares (`lunet.module{}`, `M.sub`, `M.event`) is *staged* in
//!    [`ModelState`] and becomes the runtime's when the file has run
//!    (`commit`). A reload (`reload MODULE` on the console) stages the new
//!    code the same way and swaps it in only if it loaded; otherwise the
//!    old code keeps running.
//! 3. Every Lua function the model keeps (a Sub, an attached function)
//!    lives in the VM's table of functions (`FUNCTIONS`, in the registry),
//!    under a slot; the state holds slots, never Lua values.
//! 4. Subs, events and group operations travel as messages on the one
//!    path (`Event::Message` with the kinds of `protocol::MessageKind`).
//!    The receiver of a Sub checks its id in Rust before it decodes any
//!    argument: an unknown module, a wrong version or an unknown Sub costs
//!    it a log line, and the caller gets an error naming both sides.
//! 5. When a runtime exits it leaves its groups, its watches end, and the
//!    process forgets its modules (`host/inbox.rs`, `exit`).

pub mod events;
pub mod groups;
mod manager;
pub mod modules;
pub mod state_store;
pub mod subs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlua::{Lua, Table, Value};

use crate::caps::{Capability, Caps};
use crate::codec::SocketMeta;
use state_store::StateStore;
use subs::{check_module_name, check_name, NameError};

/// The name of the VM's table of functions in the Lua registry (step 3).
pub const FUNCTIONS: &str = "lunet.model.functions";

/// `model.lua`, compiled once per process (as the prelude).
pub static MODEL: crate::parts::Chunk =
    crate::parts::Chunk::new("@lunet/model.lua", include_str!("model.lua"));

/// What a spawn declared for its runtime.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSpec {
    /// Modules to load at start (with their dependencies).
    pub modules: Vec<String>,
    /// The name it was spawned with: where its state is saved.
    pub name: Option<String>,
    /// `state = true`.
    pub state: bool,
    /// The database file of `storage = ...`.
    pub storage: Option<PathBuf>,
}

/// Why the runtime options of a spawn are refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("lunet.spawn: modules must be a list of module names, got {0}")]
    Modules(&'static str),
    #[error("lunet.spawn: {0}")]
    Name(#[from] NameError),
    #[error("lunet.spawn: state must be true or false, got {0}")]
    State(&'static str),
    #[error("lunet.spawn: storage must be a file name or true, got {0}")]
    Storage(&'static str),
    #[error("lunet.spawn: storage = true keeps the database in <name>.sqlite in the data directory: give the runtime a name")]
    StorageName,
    #[error("lunet.spawn: storage = true: the name '{0}' cannot be a file name (letters, digits, '.', '_', '-', ':', not starting with '.')")]
    StorageFile(String),
    #[error("lunet.spawn: storage = '{0}' must name a file in the data directory (a relative path without '..')")]
    StoragePath(String),
    #[error("lunet.spawn: group must be a group name, got {0}")]
    Group(&'static str),
}

impl RuntimeSpec {
    /// The runtime options of a spawn: `modules`, `state`, `storage`
    /// (relative to `data_dir`), and what a sandbox's `caps` declare of
    /// state and storage. (A trusted service holds both capabilities but
    /// opens neither unless declared.)
    pub fn parse(
        options: &Table,
        name: Option<String>,
        data_dir: &Path,
        caps: &Caps,
    ) -> Result<RuntimeSpec, SpecError> {
        let modules = match options.get::<Value>("modules").unwrap_or(Value::Nil) {
            Value::Nil => Vec::new(),
            Value::Table(list) => {
                let mut modules = Vec::new();
                for value in list.sequence_values::<Value>() {
                    match value {
                        Ok(Value::String(module)) => {
                            let module = module.to_string_lossy();
                            check_module_name(&module)?;
                            modules.push(module);
                        }
                        Ok(other) => return Err(SpecError::Modules(other.type_name())),
                        Err(_) => return Err(SpecError::Modules("a table that cannot be read")),
                    }
                }
                modules
            }
            other => return Err(SpecError::Modules(other.type_name())),
        };
        let declares = |capability| !caps.is_trusted() && caps.allows(capability);
        let state = match options.get::<Value>("state").unwrap_or(Value::Nil) {
            Value::Nil => declares(Capability::State),
            Value::Boolean(state) => state,
            other => return Err(SpecError::State(other.type_name())),
        };
        let storage = match options.get::<Value>("storage").unwrap_or(Value::Nil) {
            Value::Nil if declares(Capability::Storage) => Some(named_file(&name, data_dir)?),
            Value::Nil | Value::Boolean(false) => None,
            Value::Boolean(true) => Some(named_file(&name, data_dir)?),
            Value::String(file) if !file.as_bytes().is_empty() => {
                Some(data_dir.join(data_file(&file.to_string_lossy())?))
            }
            other => return Err(SpecError::Storage(other.type_name())),
        };
        Ok(RuntimeSpec {
            modules,
            name,
            state,
            storage,
        })
    }

    /// Whether it declares anything of the model (otherwise the spawn is of
    /// a plain service, which loads the model only if it uses it).
    pub fn is_runtime(&self) -> bool {
        self.starts_runtime() || self.storage.is_some()
    }

    /// Whether the main chunk is `start_runtime` (step 1).
    pub fn starts_runtime(&self) -> bool {
        !self.modules.is_empty() || self.state
    }
}

/// `<name>.sqlite` in the data directory, for `storage = true`.
fn named_file(name: &Option<String>, data_dir: &Path) -> Result<PathBuf, SpecError> {
    let name = name.as_deref().ok_or(SpecError::StorageName)?;
    let safe = !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if !safe || name.is_empty() {
        return Err(SpecError::StorageFile(name.to_string()));
    }
    Ok(data_dir.join(format!("{name}.sqlite")))
}

/// `storage = "file"`: a path inside the data directory, so that storage
/// reaches no other file (`lunet.db`, with the `db` capability, does).
fn data_file(file: &str) -> Result<PathBuf, SpecError> {
    let path = PathBuf::from(file);
    let inside = path
        .components()
        .all(|part| matches!(part, std::path::Component::Normal(_)));
    if inside {
        Ok(path)
    } else {
        Err(SpecError::StoragePath(file.to_string()))
    }
}

/// `spawn{group = name}`: the group the runtime joins at birth.
pub fn spawn_group(options: &Table) -> Result<Option<String>, SpecError> {
    match options.get::<Value>("group").unwrap_or(Value::Nil) {
        Value::Nil => Ok(None),
        Value::String(group) => {
            let group = group.to_string_lossy();
            check_name("group", &group)?;
            Ok(Some(group))
        }
        other => Err(SpecError::Group(other.type_name())),
    }
}

/// A module as a runtime runs it (or stages it, step 2).
#[derive(Debug)]
pub(crate) struct Module {
    version: String,
    path: PathBuf,
    /// Sub name -> slot.
    subs: HashMap<String, u32>,
    /// Full names of its events (`module.name`).
    events: Vec<String>,
}

/// Slots of the table of functions (step 3).
#[derive(Debug, Default)]
struct Slots {
    free: Vec<u32>,
    next: u32,
}

impl Slots {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next
        })
    }

    fn give_back(&mut self, slot: u32) {
        self.free.push(slot);
    }
}

/// The runtime model's part of a VM's state (`state.rs`).
#[derive(Default)]
pub struct ModelState {
    /// The modules `spawn{modules=}` listed.
    pub declared: Vec<String>,
    /// The file each module was last read from (for its next declaration).
    files: HashMap<String, PathBuf>,
    running: HashMap<String, Module>,
    staged: HashMap<String, Module>,
    /// Modules whose new code is being loaded by a reload.
    reloading: Vec<String>,
    /// Sub key (`SubId::key`) -> slot, of the running modules.
    subs: HashMap<Box<[u8]>, u32>,
    slots: Slots,
    /// Events defined here and who is attached to them; attachments made
    /// here to others' events.
    pub(crate) events: events::Events,
    pub state: Option<StateStore>,
    /// The database file of the storage interface.
    pub storage: Option<String>,
    /// The modules of the spawn are loaded (step 1).
    pub ready: bool,
}

impl ModelState {
    /// Whether the runtime serves Subs or waits for events: it stays alive
    /// without a dispatch function.
    pub fn serves(&self) -> bool {
        !self.running.is_empty() || self.events.waits()
    }

    /// Step 4: the slot of the Sub `key`, if this runtime runs it.
    #[inline]
    pub fn find_sub(&self, key: &[u8]) -> Option<u32> {
        self.subs.get(key).copied()
    }

    /// Why the Sub (module, version, name) is not run here, for the caller.
    pub fn refusal(&self, parts: [&[u8]; 3]) -> String {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let (module, version, name) = (text(parts[0]), text(parts[1]), text(parts[2]));
        match self.running.get(&module) {
            None if self.running.is_empty() => "runs no modules".to_string(),
            None => format!(
                "does not run module {module} (it runs {})",
                self.running_text()
            ),
            Some(running) if running.version != version => {
                format!("runs {module}@{}, not {module}@{version}", running.version)
            }
            Some(_) => format!("runs {module}@{version}, which has no Sub '{name}'"),
        }
    }

    /// The running modules as `a@1, b@2`, sorted.
    fn running_text(&self) -> String {
        let mut modules: Vec<String> = self
            .running
            .iter()
            .map(|(name, module)| format!("{name}@{}", module.version))
            .collect();
        modules.sort();
        modules.join(", ")
    }
}

/// The VM's table of functions (step 3).
pub fn functions(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(FUNCTIONS)
}

/// The functions of `model.lua` the scheduler calls.
pub struct ModelHalves {
    /// `run_sub(fn, source, ...)`: a Sub with its `ctx`.
    pub run_sub: mlua::Function,
    /// `start_runtime(main, ...)`: a runtime's main chunk (step 1).
    pub start_runtime: mlua::Function,
    /// `reload_module(name)`: a module's new code (step 2).
    pub reload_module: mlua::Function,
    /// The table of functions (step 3).
    pub functions: Table,
}

/// Where `load` keeps what `model.lua` returned, in the registry.
const HALVES: &str = "lunet.model.halves";

/// Loads the model into a VM, once: its Rust calls into `core`, then
/// `model.lua` with (`core`, `lunet`, the prelude's helpers). Called by the prelude's `__index` on `lunet` the first
/// time a model call is used; a runtime's build uses one at once. A
/// service that never does pays nothing (about 35 KB of Lua heap).
fn load(
    lua: &Lua,
    runtime: &lunet_core::Runtime,
    meta: SocketMeta,
    args: LoadArgs,
) -> mlua::Result<()> {
    let loaded: Option<Table> = lua.named_registry_value(HALVES)?;
    if loaded.is_some() {
        return Ok(());
    }
    let (core, lunet, prelude) = args;
    install(lua, runtime, meta, &core)?;
    let (run_sub, start_runtime, reload_module): (Value, Value, Value) =
        MODEL.function(lua)?.call((core, lunet, prelude))?;
    let halves = lua.create_sequence_from([run_sub, start_runtime, reload_module])?;
    lua.set_named_registry_value(HALVES, &halves)
}

/// What the prelude hands `core.load_model`: `core`, `lunet`, its helpers.
type LoadArgs = (Table, Table, Table);

/// A runtime's model, loaded at its build: indexing a model call of
/// `lunet` loads it (the prelude's `__index`).
pub fn load_now(lua: &Lua, lunet: &Table) -> mlua::Result<ModelHalves> {
    lunet.get::<mlua::Function>("module")?;
    let halves: Table = lua.named_registry_value(HALVES)?;
    Ok(ModelHalves {
        run_sub: halves.raw_get(1)?,
        start_runtime: halves.raw_get(2)?,
        reload_module: halves.raw_get(3)?,
        functions: functions(lua)?,
    })
}

/// Puts `core.load_model`, which brings the rest, on `core`.
pub fn install_loader(
    lua: &Lua,
    runtime: &lunet_core::Runtime,
    meta: SocketMeta,
    core: &Table,
) -> mlua::Result<()> {
    let rt = runtime.clone();
    core.set(
        "load_model",
        lua.create_function(move |lua, args: LoadArgs| load(lua, &rt, meta, args))?,
    )
}

/// Adds the model's calls to `core` (the table handed to the prelude and
/// to `model.lua`).
fn install(
    lua: &Lua,
    runtime: &lunet_core::Runtime,
    meta: SocketMeta,
    core: &Table,
) -> mlua::Result<()> {
    lua.set_named_registry_value(FUNCTIONS, lua.create_table()?)?;
    manager::install(lua, core)?;
    subs_install(lua, core)?;
    events::install(lua, runtime, meta, core)?;
    groups::install(lua, runtime, meta, core)?;
    state_store::install(lua, core, meta)?;
    core.set(
        "traceback",
        lua.create_function(|lua, message: mlua::Value| {
            let text = match &message {
                mlua::Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            };
            lua.traceback(Some(&text), 1)
        })?,
    )?;
    Ok(())
}

/// `lunet.sub(module, name [, version])`.
fn subs_install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.set(
        "sub_ref",
        lua.create_function(
            |lua, (module, name, version): (String, String, Option<String>)| {
                let reference = manager::resolve_sub(lua, &module, &name, version)?;
                lua.create_userdata(reference)
            },
        )?,
    )?;
    Ok(())
}
