//! The actor half of the `lunet` module: spawn, send, call, names, exit,
//! delayed answers and wait/wakeup. Messages travel as `Event::Message`
//! with a payload made by `codec.rs`; kinds are `protocol::MessageKind`;
//! answers go out through `mail.rs`. A send or a call whose first value is
//! a Sub reference is a Sub message (`encode_message`); a spawn with
//! `modules`, `state` or `storage` starts a runtime (`model/`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lunet_core::{Message, PostError, Runtime, Service};
use mlua::{IntoLua, Lua, MultiValue, Table, Thread, Value};

use crate::caps::{self, Capability, Caps, CapsError, GrantError};
use crate::cluster::{post_remote, remote_of};
use crate::codec::{self, CodecError, Handing, SocketMeta};
use crate::handoff::{self, HandOffError};
use crate::host::{BuildError, LuaService, Script, ServiceOptions};
use crate::ids::CallToken;
use crate::mail::{answer, error_payload};
use crate::model::subs::SubRef;
use crate::model::{groups, RuntimeSpec, SpecError};
use crate::protocol::MessageKind;
use crate::settings::Settings;
use crate::state::{with_state, StateUnavailable, VmState};
use lunet_core::shared_dict::Account;

fn runtime_error(message: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(message.into())
}

/// Why a handle names no live service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("dead")]
    Dead,
    #[error("no service is named '{0}'")]
    NoName(String),
    #[error("expected a service handle or name, got {0}")]
    NotAHandle(&'static str),
}

/// The live service a handle (integer) or a registered name names.
pub(crate) fn target(runtime: &Runtime, handle: &Value) -> Result<Arc<Service>, TargetError> {
    let id = match handle {
        Value::Integer(id) => *id as u64,
        Value::Number(f) => *f as u64,
        Value::String(name) => {
            let name = name.to_string_lossy();
            runtime.query_name(&name).ok_or(TargetError::NoName(name))?
        }
        other => return Err(TargetError::NotAHandle(other.type_name())),
    };
    runtime.service(id).ok_or(TargetError::Dead)
}

/// Why `handle` names no live service, as `what` raises it.
pub(crate) fn target_error(what: &str, handle: &Value, error: TargetError) -> String {
    match error {
        TargetError::Dead => format!("{what}: service {} is dead", describe(handle)),
        other => format!("{what}: {other}"),
    }
}

/// A handle as messages show it: `:12`, `'name'`.
pub(crate) fn describe(handle: &Value) -> String {
    match handle {
        Value::Integer(id) => format!(":{id}"),
        Value::Number(f) => format!(":{f}"),
        Value::String(name) => format!("'{}'", name.to_string_lossy()),
        other => other.type_name().to_string(),
    }
}

/// Why a send or a call was not posted.
#[derive(Debug, thiserror::Error)]
enum PostFailure {
    #[error("overloaded")]
    Overloaded,
    #[error("dead")]
    Dead,
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    HandOff(#[from] HandOffError),
    #[error(transparent)]
    State(#[from] StateUnavailable),
}

/// The kind and payload of a send (`kind` is `Send`) or a call (`Call`) of
/// `args`. A Sub reference as the first value makes it a Sub message
/// (`RunSub`, `CallSub`): the Sub's id, then the other values. Sockets are
/// handed over when `handing` collects them, refused otherwise.
pub(crate) fn encode_message(
    args: &MultiValue,
    kind: MessageKind,
    handing: Option<&mut Handing>,
    meta: SocketMeta,
) -> Result<(MessageKind, Vec<u8>), CodecError> {
    let mut payload = codec::payload();
    let mut kind = kind;
    let mut skip = 0;
    if let Some(Value::UserData(data)) = args.front() {
        if let Ok(sub) = data.borrow::<SubRef>() {
            payload.extend_from_slice(sub.0.key());
            kind = match kind {
                MessageKind::Call => MessageKind::CallSub,
                _ => MessageKind::RunSub,
            };
            skip = 1;
        }
    }
    match handing {
        Some(handing) => codec::encode_handing(args.iter().skip(skip), &mut payload, handing)?,
        None => codec::encode(args.iter().skip(skip), &mut payload, meta)?,
    }
    Ok((kind, payload))
}

/// Posts a send or a call to `target`. Socket objects among the arguments
/// are handed over (`handoff.rs`); if the post fails they come back to this
/// VM. A call gets its token.
fn post(
    lua: &Lua,
    runtime: &Runtime,
    meta: SocketMeta,
    target: &Arc<Service>,
    kind: MessageKind,
    args: &MultiValue,
) -> Result<Option<CallToken>, PostFailure> {
    let mut handing = Handing::new(meta);
    let (kind, payload) = encode_message(args, kind, Some(&mut handing), meta)?;
    let call = kind.expects_answer();
    let (from, token, attachments) = with_state(lua, |state| {
        let attachments = if handing.sockets.is_empty() {
            Vec::new()
        } else {
            handoff::detach(state, &handing.sockets)?
        };
        let token = call.then(|| state.next_call_token());
        Ok::<_, HandOffError>((state.self_id, token, attachments))
    })??;
    let session = token.map_or(0, CallToken::to_raw);
    let mut message = Message::new(from, session, kind.code(), payload);
    message.attachments = attachments;
    match runtime.post_message(target, message) {
        Ok(()) => Ok(token),
        Err((error, message)) => {
            if !handing.sockets.is_empty() {
                with_state(lua, |state| {
                    handoff::reattach(state, &handing.sockets, message.attachments)
                })?;
            }
            Err(match error {
                PostError::Overloaded => PostFailure::Overloaded,
                PostError::Dead => PostFailure::Dead,
            })
        }
    }
}

/// Adds the actor calls to `core`; `meta` tells socket objects apart (they
/// are handed over by send and call, refused elsewhere).
pub fn build(
    lua: &Lua,
    runtime: &Runtime,
    settings: &Arc<Settings>,
    meta: SocketMeta,
    core: &Table,
) -> mlua::Result<()> {
    core.set(
        "self",
        lua.create_function(|lua, ()| Ok(with_state(lua, |state| state.self_id as i64)?))?,
    )?;

    // `true` when the message is queued, or `nil, err`; the usual message
    // takes the fast path of `send.rs` (this function is its fallback,
    // and owns the Runtime the fast path reaches).
    let rt = Box::new(runtime.clone());
    let fast_runtime: *const Runtime = &*rt;
    let send = lua.create_function(move |lua, (handle, args): (Value, MultiValue)| {
        let target = match target(&rt, &handle) {
            Ok(t) => t,
            Err(e) => {
                if let Some(remote) = remote_of(&handle) {
                    return Ok(post_remote(lua, &rt, meta, &remote, false, &args)?.map(|_| true));
                }
                return Ok(Err(e.to_string()));
            }
        };
        match post(lua, &rt, meta, &target, MessageKind::Send, &args) {
            Ok(_) => Ok(Ok(true)),
            Err(PostFailure::Overloaded) => Ok(Err("overloaded".to_string())),
            Err(PostFailure::Dead) => Ok(Err("dead".to_string())),
            Err(e) => Err(runtime_error(format!("lunet.send: {e}"))),
        }
    })?;
    core.set(
        "send",
        super::send::wrap(lua, fast_runtime, MessageKind::Send, send)?,
    )?;

    // Posts the request; the wrapper then yields OP.CALL and gets
    // (true, answer...) or (false, error). The usual call takes the fast
    // path of `send.rs` (this function is its fallback, as for send).
    let rt = Box::new(runtime.clone());
    let fast_runtime: *const Runtime = &*rt;
    let call = lua.create_function(
        move |lua,
              (handle, args): (Value, MultiValue)|
              -> mlua::Result<(Option<CallToken>, Option<String>)> {
            let target = match target(&rt, &handle) {
                Ok(target) => target,
                Err(TargetError::Dead) => {
                    return Ok((
                        None,
                        Some(format!("lunet.call: service {} is dead", describe(&handle))),
                    ))
                }
                Err(e) => {
                    if let Some(remote) = remote_of(&handle) {
                        return Ok(match post_remote(lua, &rt, meta, &remote, true, &args)? {
                            Ok(token) => (token, None),
                            Err(e) => (None, Some(e)),
                        });
                    }
                    return Ok((None, Some(format!("lunet.call: {e}"))));
                }
            };
            let failure = match post(lua, &rt, meta, &target, MessageKind::Call, &args) {
                Ok(token) => return Ok((token, None)),
                Err(PostFailure::Overloaded) => {
                    format!("lunet.call: service :{} is overloaded", target.id())
                }
                Err(PostFailure::Dead) => {
                    format!("lunet.call: service :{} is dead", target.id())
                }
                Err(e) => format!("lunet.call: {e}"),
            };
            Ok((None, Some(failure)))
        },
    )?;
    core.set(
        "call",
        super::send::wrap(lua, fast_runtime, MessageKind::Call, call)?,
    )?;

    let rt = runtime.clone();
    let spawn_settings = settings.clone();
    core.set(
        "spawn",
        lua.create_function(move |lua, (options, args): (Value, MultiValue)| {
            caps::require(lua, Capability::Spawn, "lunet.spawn")?;
            let Value::Table(options) = options else {
                return Err(runtime_error(
                    "lunet.spawn: expected a script path or an options table",
                ));
            };
            match spawn(lua, &rt, &spawn_settings, meta, options, args) {
                Ok((handle, token)) => Ok((Some(handle), token.into_lua(lua)?)),
                Err(e) => Ok((None, Value::String(lua.create_string(e.to_string())?))),
            }
        })?,
    )?;

    core.set(
        "exit",
        lua.create_function(|lua, ()| Ok(with_state(lua, |state| state.exiting = true)?))?,
    )?;

    let rt = runtime.clone();
    core.set(
        "kill",
        lua.create_function(move |lua, handle: Value| {
            let target = match target(&rt, &handle) {
                Ok(t) => t,
                Err(_) => return Ok(false),
            };
            let verdict = with_state(lua, |state| kill_verdict(state, &rt, target.id()))?;
            match verdict {
                Kill::Itself => Ok(true),
                Kill::Refused(refusal) => Err(runtime_error(refusal.to_string())),
                Kill::Allowed { reserve_names } => {
                    if reserve_names {
                        rt.reserve_names(target.id());
                    }
                    Ok(rt.kill(&target, Message::signal(MessageKind::Kill.code())))
                }
            }
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "register",
        lua.create_function(move |lua, name: String| {
            if name.is_empty() {
                return Ok((
                    false,
                    Some("lunet.register: the name must not be empty".to_string()),
                ));
            }
            let (id, trusted) = with_state(lua, |state| (state.self_id, state.caps.is_trusted()))?;
            match rt.register_name(&name, id, trusted) {
                Ok(()) => Ok((true, None)),
                Err(taken) => Ok((false, Some(format!("lunet.register: {taken}")))),
            }
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "query",
        lua.create_function(move |_, name: String| Ok(rt.query_name(&name).map(|id| id as i64)))?,
    )?;

    core.set(
        "set_dispatch",
        lua.create_function(|lua, ()| Ok(with_state(lua, |state| state.dispatch = true)?))?,
    )?;

    let rt = runtime.clone();
    core.set(
        "response",
        lua.create_function(move |lua, ()| {
            let taken = with_state(lua, |state| {
                let call = state.calls.remove(&state.running.session())?;
                state.delayed.insert(call);
                Some((state.self_id, call))
            })?;
            let Some((from, caller)) = taken else {
                return Err(runtime_error(
                    "lunet.response: this session is not answering a call (or already took its answer)",
                ));
            };
            let used = AtomicBool::new(false);
            let rt = rt.clone();
            let reply = lua.create_function(move |lua, args: MultiValue| {
                if used.swap(true, Ordering::Relaxed) {
                    return Ok(false);
                }
                let mut payload = codec::payload();
                let kind = match codec::encode(args.iter(), &mut payload, meta) {
                    Ok(()) => MessageKind::Response,
                    Err(e) => {
                        payload = error_payload(&format!("the answer could not be sent: {e}"));
                        MessageKind::Error
                    }
                };
                with_state(lua, |state| state.delayed.remove(&caller))?;
                Ok(answer(&rt, from, caller, kind, payload))
            })?;
            Ok(reply)
        })?,
    )?;

    core.set(
        "wakeup",
        lua.create_function(|lua, co: Thread| {
            let pointer = co.to_pointer() as usize;
            Ok(with_state(lua, |state| {
                match state.suspended.remove(&pointer) {
                    Some(sid) => {
                        state.wakeups.push(sid);
                        true
                    }
                    None => false,
                }
            })?)
        })?,
    )?;

    Ok(())
}

/// What `lunet.kill` may do to a target.
enum Kill {
    /// The caller named itself: it exits after this slice.
    Itself,
    /// `reserve_names`: a sandbox kills a service it did not spawn, whose
    /// names it must not take over afterwards.
    Allowed {
        reserve_names: bool,
    },
    Refused(KillRefusal),
}

#[derive(Debug, thiserror::Error)]
enum KillRefusal {
    #[error("lunet.kill: not permitted: :{0} is a host or the first service, which a sandboxed service cannot kill")]
    Protected(u64),
    #[error("lunet.kill: not permitted: spawned without kill (a sandboxed service may kill only the services it spawned, and :{0} is not one)")]
    NotAChild(u64),
}

/// The rules of `lunet.kill` (see `caps.rs` and the Lua reference): trusted
/// services kill anything; a sandbox never a protected service (hosts, the
/// first service), and without `kill` only its own children.
fn kill_verdict(state: &mut VmState, runtime: &Runtime, target: u64) -> Kill {
    if target == state.self_id {
        state.exiting = true;
        return Kill::Itself;
    }
    if state.caps.is_trusted() {
        return Kill::Allowed {
            reserve_names: false,
        };
    }
    if runtime.is_protected(target) {
        return Kill::Refused(KillRefusal::Protected(target));
    }
    let child = state.children.contains(&target);
    if child || state.caps.allows(Capability::Kill) {
        Kill::Allowed {
            reserve_names: !child,
        }
    } else {
        Kill::Refused(KillRefusal::NotAChild(target))
    }
}

/// Why `lunet.spawn` failed (raised at the caller).
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    #[error("lunet.spawn: a script path is required (or modules, for a runtime)")]
    NoScript,
    #[error("lunet.spawn: cannot find script '{0}'")]
    NotFound(String),
    #[error("lunet.spawn: cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("lunet.spawn: {0}")]
    Codec(CodecError),
    #[error("lunet.spawn: {0}")]
    Build(BuildError),
    #[error("lunet.spawn: {0}")]
    NameTaken(lunet_core::NameRefused),
    #[error(transparent)]
    Caps(#[from] CapsError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("lunet.spawn: cannot grant memory = {asked}: this service is itself limited to {held} bytes")]
    Memory { asked: usize, held: usize },
    #[error("lunet.spawn: memory must be a positive number of bytes, got {0}")]
    BadMemory(i64),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("lunet.spawn: cannot create the data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    /// A bad option (a wrong type).
    #[error("{0}")]
    Options(#[from] mlua::Error),
}

fn spawn(
    lua: &Lua,
    runtime: &Runtime,
    settings: &Arc<Settings>,
    meta: SocketMeta,
    options: Table,
    args: MultiValue,
) -> Result<(i64, CallToken), SpawnError> {
    let script: Option<String> = options.get("script")?;
    let name: Option<String> = options.get("name")?;
    let memory: Option<i64> = options.get("memory")?;
    let mailbox: Option<i64> = options.get("mailbox")?;
    let trusted: bool = options.get::<Option<bool>>("trusted")?.unwrap_or(false);
    let declared: Value = options.get("caps")?;
    if trusted && declared != Value::Nil {
        return Err(CapsError::TrustedWithCaps.into());
    }
    let mut caps = if trusted {
        Caps::all()
    } else {
        Caps::from_lua(&declared)?
    };
    // state and storage are capabilities declared as options, or in caps.
    let spec = RuntimeSpec::parse(&options, name.clone(), &settings.data_dir, &caps)?;
    let group = crate::model::spawn_group(&options)?;
    if script.is_none() && spec.modules.is_empty() {
        return Err(SpawnError::NoScript);
    }
    if spec.state {
        caps = caps.with(Capability::State);
    }
    if spec.storage.is_some() {
        caps = caps.with(Capability::Storage);
    }
    let parent = with_state(lua, |state| Parent {
        caps: state.caps.clone(),
        memory_limit: state.memory_limit,
        dict_account: state.dict_account.clone(),
    })
    .map_err(mlua::Error::from)?;
    parent.caps.grant(&caps)?;
    let memory_limit = match memory {
        Some(asked) if asked <= 0 => return Err(SpawnError::BadMemory(asked)),
        Some(asked) => Some(asked as usize),
        // A child of a limited parent gets its limit by default.
        None => parent.memory_limit,
    };
    if let (Some(asked), Some(held)) = (memory_limit, parent.memory_limit) {
        if asked > held && !parent.caps.is_trusted() {
            return Err(SpawnError::Memory { asked, held });
        }
    }
    let script = match script {
        Some(script) => {
            let path = resolve_script(&script, settings.script_dir.as_deref())
                .ok_or(SpawnError::NotFound(script))?;
            // A script is read here, on the worker: it is small and in the
            // page cache in practice (skynet does the same); a tool that
            // spawns from slow storage should read it with lunet.fs.read
            // first.
            let source = std::fs::read(&path).map_err(|error| SpawnError::Read {
                path: path.display().to_string(),
                error,
            })?;
            Script {
                path: path.display().to_string(),
                source,
            }
        }
        // A runtime of modules only: its script is empty.
        None => Script {
            path: format!("runtime of {}", spec.modules.join(", ")),
            source: Vec::new(),
        },
    };
    if let Some(dir) = spec.storage.as_ref().and_then(|file| file.parent()) {
        std::fs::create_dir_all(dir).map_err(|error| SpawnError::DataDir {
            path: dir.display().to_string(),
            error,
        })?;
    }
    let mut payload = Vec::new();
    codec::encode(args.iter(), &mut payload, meta).map_err(SpawnError::Codec)?;
    let label = name.clone().unwrap_or_else(|| script.path.clone());
    let service_options = ServiceOptions {
        caps,
        memory_limit,
        // What a sandbox's children put in dicts counts against its own
        // bound too; a trusted parent's bound covers only its own writes.
        dict_parent: parent.dict_account.filter(|_| !parent.caps.is_trusted()),
        runtime: spec.is_runtime().then_some(spec),
    };
    let body = LuaService::build(
        runtime,
        &label,
        settings.clone(),
        &script,
        None,
        service_options,
        &|_| Ok(()),
    )
    .map_err(SpawnError::Build)?;
    let service = runtime.spawn_service(&label, Box::new(body));
    if let Some(cap) = mailbox.filter(|m| *m > 0) {
        service.set_mailbox_cap(cap as usize);
    }
    // START goes in first: the mailbox keeps order, so a message sent by
    // someone who finds the name runs after the main chunk has begun.
    let (from, session) = with_state(lua, |state| {
        state.add_child(runtime, service.id());
        (state.self_id, state.next_call_token())
    })
    .map_err(mlua::Error::from)?;
    runtime.post(
        &service,
        lunet_core::Event::Message(Message::new(
            from,
            session.to_raw(),
            MessageKind::Start.code(),
            payload,
        )),
    );
    if let Some(name) = name {
        if let Err(taken) = runtime.register_name(&name, service.id(), parent.caps.is_trusted()) {
            runtime.post(
                &service,
                lunet_core::Event::Message(Message::signal(MessageKind::Kill.code())),
            );
            return Err(SpawnError::NameTaken(taken));
        }
    }
    // Joins at birth; it leaves when it exits (a failed start included).
    if let Some(group) = group {
        groups::join(&group, service.id());
    }
    Ok((service.id() as i64, session))
}

/// What a spawn inherits from the service that spawns.
struct Parent {
    caps: Caps,
    memory_limit: Option<usize>,
    dict_account: Option<Arc<Account>>,
}

fn resolve_script(script: &str, dir: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    let direct = std::path::PathBuf::from(script);
    if direct.is_file() {
        return Some(direct);
    }
    let in_dir = dir?.join(script);
    in_dir.is_file().then_some(in_dir)
}
