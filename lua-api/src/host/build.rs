//! Building a service's VM: the standard library it gets (trusted or
//! sandboxed), its state, the `lunet` module, the prelude, the script.

use std::sync::{mpsc, Arc};

use lunet_core::Runtime;
use mlua::{Function, Lua, LuaOptions, StdLib, Table};

use super::sessions::Sched;
use super::LuaService;
use crate::api;
use crate::caps::Caps;
use crate::codec::SocketMeta;
use crate::interrupt::LuaInterrupt;
use crate::memory::{InstallError, VmMemory};
use crate::model::state_store::StateStore;
use crate::model::RuntimeSpec;
use crate::parts::Chunk;
use crate::settings::Settings;
use crate::state::{vm_identity, OwnedState, VmState};
use lunet_core::shared_dict::Account;

/// How a service's VM is set up.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// What the service may reach (`caps.rs`). Trusted caps (hosts, `lunet
    /// run`, `spawn{trusted=true}`) also give the full standard library;
    /// otherwise no `io`, `debug`, `os.execute` and friends, text-only `load`.
    pub caps: Caps,
    /// Bytes the script may allocate beyond the fresh VM; the allocation
    /// that crosses it fails with a Lua error. It also bounds what the
    /// service holds in shared dicts (`dict.rs`).
    pub memory_limit: Option<usize>,
    /// The dict account of a sandboxed parent, which pays for what this
    /// service puts in shared dicts too.
    pub dict_parent: Option<Arc<Account>>,
    /// What a `lunet.spawn` declared of the runtime model: modules, state,
    /// storage (`None`: hosts and the first service of `lunet run`).
    pub runtime: Option<RuntimeSpec>,
}

impl ServiceOptions {
    /// Everything, with `memory_limit`.
    pub fn trusted(memory_limit: Option<usize>) -> ServiceOptions {
        ServiceOptions {
            caps: Caps::all(),
            memory_limit,
            dict_parent: None,
            runtime: None,
        }
    }
}

/// Where a new Lua service starts.
pub struct Script {
    /// Name used in chunk names and logs.
    pub path: String,
    pub source: Vec<u8>,
}

/// `prelude.lua`, what every VM runs when it is built (`parts.rs` has the
/// rest, loaded on first use).
static PRELUDE: Chunk = Chunk::new("@lunet/prelude.lua", include_str!("../prelude.lua"));

/// `sandbox.lua`, run after the prelude in a sandboxed VM.
static SANDBOX: Chunk = Chunk::new("@lunet/sandbox.lua", include_str!("../sandbox.lua"));

/// What the Lua half hands the scheduler: the functions it calls.
struct Halves {
    run_handler: Function,
    dispatch: Function,
    /// A runtime's (`model.lua`).
    model: Option<crate::model::ModelHalves>,
}

/// Why a VM could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot create a Lua VM: {0}")]
    Vm(mlua::Error),
    #[error("cannot load lunet's Lua side: {0}")]
    Lunet(mlua::Error),
    /// The embedder's setup function failed.
    #[error("setup failed: {0}")]
    Setup(mlua::Error),
    /// The script does not compile (the message names it and the line).
    #[error(transparent)]
    Script(mlua::Error),
    #[error(transparent)]
    Memory(#[from] InstallError),
}

/// A script that does not compile; the message names it and the line.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ScriptError(#[from] mlua::Error);

/// Compiles a script without running it.
pub fn check_script(script: &Script) -> Result<(), ScriptError> {
    Lua::new()
        .load(&script.source[..])
        .set_name(format!("@{}", script.path))
        .into_function()?;
    Ok(())
}

/// How a service's main chunk reports that it has started: `Ok` once it
/// returned (it may yield on the way), or why it failed.
pub type Startup = mpsc::Sender<Result<(), StartError>>;

/// The main chunk raised (or was interrupted) before it returned.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// Lua's message, naming the script and the line.
    pub message: String,
}

impl LuaService {
    /// Builds a VM with the `lunet` module and `script` compiled, ready to run
    /// it when the service gets `MessageKind::Start`.
    pub fn new(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<Startup>,
    ) -> Result<LuaService, BuildError> {
        Self::with_setup(runtime, name, settings, script, startup, &|_| Ok(()))
    }

    /// Like [`LuaService::new`], with `setup` run on the fresh VM after the
    /// `lunet` module exists and before the script is compiled: the way an
    /// embedder (the connector) adds modules of its own, e.g. through
    /// `package.loaded`.
    pub fn with_setup(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<Startup>,
        setup: &dyn Fn(&Lua) -> mlua::Result<()>,
    ) -> Result<LuaService, BuildError> {
        let options = ServiceOptions::trusted(settings.host_memory);
        Self::build(runtime, name, settings, script, startup, options, setup)
    }

    /// The general constructor: `options` say whether the script is trusted
    /// (full standard library) or sandboxed, and its memory limit.
    pub fn build(
        runtime: &Runtime,
        name: &str,
        settings: Arc<Settings>,
        script: &Script,
        startup: Option<Startup>,
        options: ServiceOptions,
        setup: &dyn Fn(&Lua) -> mlua::Result<()>,
    ) -> Result<LuaService, BuildError> {
        let trusted = options.caps.is_trusted();
        // Only the base library and `string`: the prelude opens the others
        // on first use (`globals.rs`), an idle service stays small.
        let lua = if trusted {
            // SAFETY: a trusted script is the operator's own code (as in
            // OpenResty): it gets the whole standard library, `debug`
            // included; what it loads is its business.
            unsafe { Lua::unsafe_new_with(StdLib::STRING, LuaOptions::default()) }
        } else {
            Lua::new_with(StdLib::STRING, LuaOptions::default()).map_err(BuildError::Vm)?
        };
        let memory = VmMemory::install(&lua)?;
        crate::interrupt::note_xpcall(&lua).map_err(BuildError::Vm)?;
        let interrupt = Arc::new(LuaInterrupt::new());
        let identity = vm_identity(&lua).map_err(BuildError::Vm)?;
        let mut vm_state = VmState::new(identity, settings.clone(), interrupt.clone());
        vm_state.caps = options.caps.clone();
        vm_state.memory_limit = options.memory_limit;
        vm_state.dict_account = options
            .memory_limit
            .map(|limit| Account::new(limit, options.dict_parent.clone()))
            .or(options.dict_parent.clone());
        if let Some(spec) = &options.runtime {
            vm_state.model.declared = spec.modules.clone();
            // Without modules to load there is nothing to wait for (model
            // step 1): `start_runtime` marks the others ready.
            vm_state.model.ready = !spec.starts_runtime();
            if spec.state {
                vm_state.model.state = Some(StateStore::new(
                    spec.name.clone(),
                    &settings.data_dir,
                    vm_state.dict_account.clone(),
                ));
            }
            vm_state.model.storage = spec.storage.as_ref().map(|file| file.display().to_string());
        }
        let state = OwnedState::new(vm_state);
        let socket_meta = lua.create_table().map_err(BuildError::Lunet)?;
        let lunet = || -> mlua::Result<Halves> {
            crate::globals::install(&lua)?;
            let core = api::build(&lua, runtime, &settings, &socket_meta, &options.caps)?;
            let (run_handler, dispatch, lunet, shared): (Function, Function, Table, Function) =
                PRELUDE.function(&lua)?.call((core.clone(), !trusted))?;
            // A runtime loads the model's half now; any other VM when it
            // first uses it (a model call of `lunet`, `prelude/model.lua`).
            let model = match &options.runtime {
                Some(_) => Some(crate::model::load_now(&lua, &lunet)?),
                None => None,
            };
            if !trusted {
                SANDBOX.function(&lua)?.call::<()>((core, lunet, shared))?;
            }
            Ok(Halves {
                run_handler,
                dispatch,
                model,
            })
        };
        let halves = lunet().map_err(BuildError::Lunet)?;
        setup(&lua).map_err(BuildError::Setup)?;
        let mut main = lua
            .load(&script.source[..])
            .set_name(format!("@{}", script.path))
            .into_function()
            .map_err(BuildError::Script)?;
        if let Some(model) = &halves.model {
            if options
                .runtime
                .as_ref()
                .is_some_and(RuntimeSpec::starts_runtime)
            {
                // Model step 1: the state, the modules, then the script.
                main = model.start_runtime.bind(main).map_err(BuildError::Lunet)?;
            }
        }
        memory.limit_from_now(options.memory_limit);
        Ok(LuaService {
            lua,
            memory,
            caps: options.caps,
            state,
            runtime: runtime.clone(),
            settings,
            name: name.to_string(),
            self_id: 0,
            sched: Sched::default(),
            threads: Vec::new(),
            run_handler: halves.run_handler,
            main: Some(main),
            main_session: None,
            startup,
            dispatch: halves.dispatch,
            model: halves.model,
            early: Vec::new(),
            socket_key: SocketMeta::of(&socket_meta),
            socket_meta,
            interrupt,
            main_reply: None,
            exiting: false,
            dispatching: false,
            exited: false,
            dirty: Vec::new(),
            bytes: Vec::new(),
            reclaiming: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_and_sandbox_compile() {
        assert!(!PRELUDE.bytecode().is_empty());
        assert!(!SANDBOX.bytecode().is_empty());
        assert!(!crate::model::MODEL.bytecode().is_empty());
    }
}
