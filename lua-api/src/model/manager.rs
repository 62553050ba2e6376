//! The module manager's per-runtime half: the bindings `model.lua` loads
//! modules with, and what a runtime runs (steps 2 and 3 of `mod.rs`).
//! The order of loading, dependencies and their chains are `model.lua`'s;
//! files and compiled code are `modules.rs`'s.

use std::path::PathBuf;
use std::sync::Arc;

use mlua::{Function, Lua, Table, Value};

use super::modules;
use super::subs::{
    captured_upvalue, check_module_name, check_name, check_version, NameError, SubId, SubRef,
};
use super::{functions, ModelState, Module};
use crate::state::with_state;

/// Why a declaration was refused (raised in the module's code).
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{what}: {error}")]
    Name {
        what: &'static str,
        error: NameError,
    },
    #[error("lunet.module: module {0} is declared twice")]
    Twice(String),
    #[error("lunet.module: module {0} is loaded in this runtime already")]
    Loaded(String),
    #[error("{what}: module {module} is not being loaded or run in this runtime")]
    NotLoaded { what: &'static str, module: String },
    #[error("M.sub: module {module} has a Sub '{name}' already")]
    DuplicateSub { module: String, name: String },
    #[error("M.event: module {module} defines the event '{name}' already")]
    DuplicateEvent { module: String, name: String },
    #[error("M.sub('{0}'): the function captures the upvalue '{1}': a Sub runs in other runtimes and may use only its arguments and the globals of its module (make '{1}' a global of the module, or pass it as an argument)")]
    Upvalue(String, String),
    #[error("M.sub('{0}'): a Sub must be a Lua function")]
    NotLua(String),
    #[error("lunet.sub: module {module}@{version} has no Sub '{name}'")]
    NoSub {
        module: String,
        version: String,
        name: String,
    },
    #[error("lunet.sub: module {0} is not loaded in this process: give its version, as lunet.sub(\"{0}\", \"{1}\", \"1.0\")")]
    Unknown(String, String),
}

fn named(what: &'static str) -> impl Fn(NameError) -> ManagerError {
    move |error| ManagerError::Name { what, error }
}

/// What a commit changed (step 2 of `mod.rs`).
struct Commit {
    /// Slots of the old code, to empty.
    freed: Vec<u32>,
    /// The version that ran before (a reload), if any.
    old: Option<String>,
    version: String,
    path: PathBuf,
    subs: Vec<String>,
}

impl ModelState {
    fn module_mut(
        &mut self,
        what: &'static str,
        module: &str,
    ) -> Result<&mut Module, ManagerError> {
        match self.staged.get_mut(module) {
            Some(staged) => Ok(staged),
            None => self
                .running
                .get_mut(module)
                .ok_or_else(|| ManagerError::NotLoaded {
                    what,
                    module: module.to_string(),
                }),
        }
    }

    /// `lunet.module{name = module, version = ...}`: stages the module.
    fn declare(&mut self, module: &str, version: &str) -> Result<(), ManagerError> {
        check_version(version).map_err(named("lunet.module"))?;
        if self.staged.contains_key(module) {
            return Err(ManagerError::Twice(module.to_string()));
        }
        if self.running.contains_key(module) && !self.reloading.iter().any(|m| m == module) {
            return Err(ManagerError::Loaded(module.to_string()));
        }
        let path = self.files.get(module).cloned().unwrap_or_default();
        self.staged.insert(
            module.to_string(),
            Module {
                version: version.to_string(),
                path,
                subs: Default::default(),
                events: Vec::new(),
            },
        );
        Ok(())
    }

    /// `M.sub(name, fn)`: the slot for `fn`, and the Sub's id.
    fn register_sub(
        &mut self,
        module: &str,
        name: &str,
    ) -> Result<(u32, Arc<SubId>), ManagerError> {
        let (entry, staged) = match self.staged.get_mut(module) {
            Some(entry) => (entry, true),
            None => match self.running.get_mut(module) {
                Some(entry) => (entry, false),
                None => {
                    return Err(ManagerError::NotLoaded {
                        what: "M.sub",
                        module: module.to_string(),
                    })
                }
            },
        };
        if entry.subs.contains_key(name) {
            return Err(ManagerError::DuplicateSub {
                module: module.to_string(),
                name: name.to_string(),
            });
        }
        let id = Arc::new(SubId::new(module, &entry.version, name));
        let slot = self.slots.take();
        entry.subs.insert(name.to_string(), slot);
        if !staged {
            self.subs.insert(id.key().into(), slot);
        }
        Ok((slot, id))
    }

    /// `M.event(name)`: defines `module.name` here.
    fn define_event(&mut self, module: &str, name: &str) -> Result<String, ManagerError> {
        let full = format!("{module}.{name}");
        let entry = self.module_mut("M.event", module)?;
        if entry.events.contains(&full) {
            return Err(ManagerError::DuplicateEvent {
                module: module.to_string(),
                name: name.to_string(),
            });
        }
        entry.events.push(full.clone());
        self.events.define(&full);
        Ok(full)
    }

    /// Step 2: the staged module becomes the running one.
    fn commit(&mut self, module: &str) -> Result<Commit, ManagerError> {
        let fresh = self
            .staged
            .remove(module)
            .ok_or_else(|| ManagerError::NotLoaded {
                what: "lunet.module",
                module: module.to_string(),
            })?;
        self.reloading.retain(|m| m != module);
        let mut freed = Vec::new();
        let old = self.running.remove(module).map(|old| {
            for (name, slot) in &old.subs {
                self.subs
                    .remove(SubId::new(module, &old.version, name).key());
                freed.push(*slot);
            }
            for event in old.events.iter().filter(|e| !fresh.events.contains(e)) {
                freed.extend(self.events.remove(event));
            }
            old.version
        });
        for (name, slot) in &fresh.subs {
            self.subs
                .insert(SubId::new(module, &fresh.version, name).key().into(), *slot);
        }
        for slot in &freed {
            self.slots.give_back(*slot);
        }
        let commit = Commit {
            freed,
            old,
            version: fresh.version.clone(),
            path: fresh.path.clone(),
            subs: fresh.subs.keys().cloned().collect(),
        };
        self.running.insert(module.to_string(), fresh);
        Ok(commit)
    }

    /// Step 2: a load that failed: its slots, to empty.
    fn unstage(&mut self, module: &str) -> Vec<u32> {
        self.reloading.retain(|m| m != module);
        let Some(staged) = self.staged.remove(module) else {
            return Vec::new();
        };
        let mut freed: Vec<u32> = staged.subs.values().copied().collect();
        let kept = self.running.get(module).map(|m| &m.events);
        for event in &staged.events {
            if !kept.is_some_and(|kept| kept.contains(event)) {
                freed.extend(self.events.remove(event));
            }
        }
        for slot in &freed {
            self.slots.give_back(*slot);
        }
        freed
    }
}

fn runtime_error(error: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(error.to_string())
}

/// Empties slots of the table of functions.
fn clear(lua: &Lua, slots: &[u32]) -> mlua::Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    let table = functions(lua)?;
    for slot in slots {
        table.raw_set(*slot, Value::Nil)?;
    }
    Ok(())
}

/// `lunet.sub(module, name [, version])`: the version given, or the one
/// this runtime runs, or the one the process last loaded.
pub fn resolve_sub(
    lua: &Lua,
    module: &str,
    name: &str,
    version: Option<String>,
) -> mlua::Result<SubRef> {
    check_module_name(module)
        .map_err(named("lunet.sub"))
        .map_err(runtime_error)?;
    check_name("Sub", name)
        .map_err(named("lunet.sub"))
        .map_err(runtime_error)?;
    let version = match version {
        Some(version) => {
            check_version(&version)
                .map_err(named("lunet.sub"))
                .map_err(runtime_error)?;
            version
        }
        None => {
            let here = with_state(lua, |state| {
                let model = &state.model;
                model
                    .staged
                    .get(module)
                    .or_else(|| model.running.get(module))
                    .map(|m| (m.version.clone(), m.subs.contains_key(name)))
            })?;
            let (version, has) = match here {
                Some(found) => found,
                None => modules::known_version(module, name).ok_or_else(|| {
                    runtime_error(ManagerError::Unknown(module.into(), name.into()))
                })?,
            };
            if !has {
                return Err(runtime_error(ManagerError::NoSub {
                    module: module.into(),
                    version,
                    name: name.into(),
                }));
            }
            version
        }
    };
    Ok(SubRef(Arc::new(SubId::new(module, &version, name))))
}

/// Adds the calls of module loading to `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    // (function) or (nil, error): model.lua adds the chain of dependencies.
    core.set(
        "module_chunk",
        lua.create_function(|lua, (name, env): (String, Table)| {
            let settings = with_state(lua, |state| state.settings.clone())?;
            match modules::chunk(lua, &name, &settings.module_path, env) {
                Ok((function, path)) => {
                    with_state(lua, |state| state.model.files.insert(name, path))?;
                    Ok((Some(function), None))
                }
                Err(e) => Ok((None, Some(e.to_string()))),
            }
        })?,
    )?;
    core.set(
        "module_exists",
        lua.create_function(|lua, name: String| {
            let settings = with_state(lua, |state| state.settings.clone())?;
            Ok(modules::find(&name, &settings.module_path).is_ok())
        })?,
    )?;
    core.set(
        "module_declare",
        lua.create_function(|lua, (name, version): (String, String)| {
            with_state(lua, |state| state.model.declare(&name, &version))?.map_err(runtime_error)
        })?,
    )?;
    core.set(
        "module_reload_begin",
        lua.create_function(|lua, name: String| {
            with_state(lua, |state| state.model.reloading.push(name))?;
            Ok(())
        })?,
    )?;
    core.set(
        "sub_register",
        lua.create_function(|lua, (module, name, function): (String, Value, Value)| {
            let name = name_argument("M.sub", "Sub", name)?;
            let Value::Function(function) = function else {
                return Err(runtime_error(ManagerError::NotLua(name)));
            };
            check_sub_function(lua, &name, &function)?;
            let (slot, id) = with_state(lua, |state| state.model.register_sub(&module, &name))?
                .map_err(runtime_error)?;
            functions(lua)?.raw_set(slot, function)?;
            lua.create_userdata(SubRef(id))
        })?,
    )?;
    core.set(
        "event_define",
        lua.create_function(|lua, (module, name): (String, Value)| {
            let name = name_argument("M.event", "event", name)?;
            with_state(lua, |state| state.model.define_event(&module, &name))?
                .map_err(runtime_error)
        })?,
    )?;
    // The text of a reload ("a@1 -> a@2"), or nil for a first load.
    core.set(
        "module_commit",
        lua.create_function(|lua, name: String| {
            let (commit, service) =
                with_state(lua, |state| (state.model.commit(&name), state.self_id))?;
            let commit = commit.map_err(runtime_error)?;
            clear(lua, &commit.freed)?;
            modules::note_running(service, &name, &commit.version, &commit.path, commit.subs);
            Ok(commit
                .old
                .map(|old| format!("{name}@{old} -> {name}@{}", commit.version)))
        })?,
    )?;
    core.set(
        "module_unstage",
        lua.create_function(|lua, name: String| {
            let freed = with_state(lua, |state| state.model.unstage(&name))?;
            clear(lua, &freed)
        })?,
    )?;
    core.set(
        "runtime_ready",
        lua.create_function(|lua, ()| Ok(with_state(lua, |state| state.model.ready = true)?))?,
    )?;
    core.set(
        "runtime_modules",
        lua.create_function(|lua, ()| {
            let declared = with_state(lua, |state| state.model.declared.clone())?;
            lua.create_sequence_from(declared)
        })?,
    )?;
    Ok(())
}

/// The name a declaration (`what`) is given: a string that is a `kind` name.
fn name_argument(what: &'static str, kind: &'static str, name: Value) -> mlua::Result<String> {
    let Value::String(name) = name else {
        return Err(runtime_error(format!(
            "{what}: the name must be a string, got {}",
            name.type_name()
        )));
    };
    let name = name.to_str()?.to_string();
    check_name(kind, &name)
        .map_err(named(what))
        .map_err(runtime_error)?;
    Ok(name)
}

/// A Sub is a Lua function that captures nothing but `_ENV`.
fn check_sub_function(lua: &Lua, name: &str, function: &Function) -> mlua::Result<()> {
    if function.info().what == "C" {
        return Err(runtime_error(ManagerError::NotLua(name.to_string())));
    }
    match captured_upvalue(lua, function)? {
        Some(upvalue) => Err(runtime_error(ManagerError::Upvalue(
            name.to_string(),
            upvalue,
        ))),
        None => Ok(()),
    }
}
