//! The cluster: nodes of lunet joined through one NATS server
//! (docs/cluster.md). Each process that runs with `--cluster URL --node
//! NAME` has one *cluster service*: a trusted Lua service (`node.lua`)
//! that owns the process's one NATS connection, a lunet socket on lunet's
//! own reactor, and speaks NATS's text protocol over it.
//!
//! Protocol:
//! 1. [`start`] spawns the cluster service under the name [`SERVICE_NAME`]
//!    before the script's services start, and waits until it has joined
//!    (connected, node name checked, subscriptions made) or failed.
//! 2. The other VMs of the process reach it only through the Rust calls
//!    here, which check the `cluster` capability first: the `lunet.cluster`
//!    calls (`cluster.lua`) post `Call`s through `cluster_request`, and
//!    `lunet.send`/`lunet.call` given a remote reference ([`Remote`]) post
//!    the arguments, encoded once by the message codec, through
//!    [`post_remote`]. Each such message starts with the process's
//!    [`secret`], which only this module hands out: the cluster service
//!    refuses any message without it, so a sandbox without the capability
//!    cannot reach the cluster by calling the service by name.
//! 3. The cluster service publishes the encoded arguments as they are;
//!    the serving node's cluster service posts them unchanged to the
//!    named local service (`cluster_post`), so values are decoded once, by
//!    their receiver. Answers come back the same way (`cluster_response`
//!    answers a caller with bytes the codec already made).
//! 4. Whether the connection is up is one process-wide flag the cluster
//!    service sets: sends and calls to remote references fail at once
//!    while it is down.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use lunet_core::{Event, Message, Runtime};
use mlua::{Lua, LuaString, MultiValue, Table, UserData, Value};

mod forward;
pub mod push;
mod read;

use crate::caps::{self, Capability};
use crate::codec::{self, SocketMeta};
use crate::host::{LuaService, Script};
use crate::ids::CallToken;
use crate::mail::error_payload;
use crate::model::groups;
use crate::protocol::MessageKind;
use crate::settings::Settings;
use crate::state::{with_state, Caller};

/// The registered name of the cluster service (a leading dot: no script's
/// name collides with it by accident; it is taken before any script runs).
pub const SERVICE_NAME: &str = ".cluster";

/// How long [`start`] waits for the node to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages the cluster service keeps queued; past it remote sends and
/// calls are refused as overloaded. A bound, so that a sender faster than
/// NATS meets back-pressure instead of growing the queue, and so that the
/// service's own socket events (heartbeats) never wait behind a long one.
const MAILBOX: usize = 4096;

static NODE: crate::parts::Chunk =
    crate::parts::Chunk::new("@lunet/cluster/node.lua", include_str!("node.lua"));

/// Where a node joins.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT`.
    pub url: String,
    /// This node's name, unique among the live nodes.
    pub node: String,
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("--node: {0}")]
    BadNode(String),
    #[error("cannot build the cluster service: {0}")]
    Build(#[from] crate::host::BuildError),
    #[error("cannot join the cluster at {url}: {message}")]
    Failed { url: String, message: String },
    #[error("cannot join the cluster at {url}: no answer within {JOIN_TIMEOUT:?}")]
    TimedOut { url: String },
}

/// A service of another node (or of this one) known by its cluster name:
/// what `lunet.cluster.query` returns and `lunet.send`/`lunet.call` take.
#[derive(Clone, Debug)]
pub struct Remote {
    pub name: String,
    /// The node that served the name when it was queried.
    pub node: String,
}

impl UserData for Remote {
    fn add_fields<F: mlua::UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("name", |_, this| Ok(this.name.clone()));
        fields.add_field_method_get("node", |_, this| Ok(this.node.clone()));
    }

    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(mlua::MetaMethod::ToString, |_, this, ()| {
            Ok(format!("lunet.remote({}@{})", this.name, this.node))
        });
        methods.add_meta_method(mlua::MetaMethod::Eq, |_, this, other: mlua::AnyUserData| {
            Ok(other
                .borrow::<Remote>()
                .is_ok_and(|other| other.name == this.name && other.node == this.node))
        });
    }
}

/// Step 4: whether the NATS connection is up.
static CONNECTED: AtomicBool = AtomicBool::new(false);

/// Step 2: the key every message to the cluster service starts with.
fn secret() -> i64 {
    static SECRET: OnceLock<i64> = OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        hasher.finish() as i64
    })
}

/// A node name is one NATS subject token.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("'{name}': a name has 1 to 128 characters"));
    }
    if name
        .bytes()
        .any(|b| b <= b' ' || b == b'.' || b == b'*' || b == b'>' || b == 0x7f)
    {
        return Err(format!(
            "'{name}': a name has no space, control character, '.', '*' or '>'"
        ));
    }
    Ok(())
}

/// Step 1: spawns the cluster service and waits until the node joined.
pub fn start(
    runtime: &Runtime,
    settings: &Arc<Settings>,
    config: &ClusterConfig,
) -> Result<(), JoinError> {
    check_name(&config.node).map_err(JoinError::BadNode)?;
    let source = format!(
        "return require('lunet').cluster.serve({:?}, {:?})",
        config.url, config.node
    );
    let script = Script {
        path: "lunet/cluster".to_string(),
        source: source.into_bytes(),
    };
    let (sender, startup) = mpsc::channel();
    let body = LuaService::new(runtime, "cluster", settings.clone(), &script, Some(sender))?;
    let service = runtime.spawn_service("cluster", Box::new(body));
    if let Err(taken) = runtime.register_name(SERVICE_NAME, service.id(), true) {
        return Err(JoinError::Failed {
            url: config.url.clone(),
            message: taken.to_string(),
        });
    }
    runtime.protect(service.id());
    service.set_mailbox_cap(MAILBOX);
    let _ = RUNTIME.set(runtime.clone());
    let _ = FETCHED.set(std::env::temp_dir().join(format!(
        "lunet-modules-{}-{}",
        config.node,
        std::process::id()
    )));
    runtime.post(
        &service,
        Event::Message(Message::signal(MessageKind::Start.code())),
    );
    match startup.recv_timeout(JOIN_TIMEOUT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(JoinError::Failed {
            url: config.url.clone(),
            // The reason, without the Lua traceback of lunet's own code.
            message: e
                .message
                .split("\nstack traceback:")
                .next()
                .unwrap_or_default()
                .trim_start_matches("runtime error: ")
                .to_string(),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(JoinError::TimedOut {
            url: config.url.clone(),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(JoinError::Failed {
            url: config.url.clone(),
            message: "the cluster service exited".to_string(),
        }),
    }
}

/// The remote reference `handle` is, if it is one.
pub(crate) fn remote_of(handle: &Value) -> Option<Remote> {
    match handle {
        Value::UserData(data) => data.borrow::<Remote>().ok().map(|r| r.clone()),
        _ => None,
    }
}

fn cluster_service(runtime: &Runtime) -> Option<Arc<lunet_core::Service>> {
    runtime
        .query_name(SERVICE_NAME)
        .and_then(|id| runtime.service(id))
}

fn not_in_cluster(what: &str) -> String {
    format!(
        "{what}: this process is not in a cluster (start it with --cluster nats://HOST:PORT --node NAME)"
    )
}

/// Posts `payload` (the secret first: step 2) from `from` to the cluster
/// service, as a call with `token` or a send.
fn post_payload(
    runtime: &Runtime,
    what: &str,
    from: u64,
    token: Option<CallToken>,
    payload: Vec<u8>,
) -> Result<(), String> {
    let service = cluster_service(runtime).ok_or_else(|| not_in_cluster(what))?;
    let kind = if token.is_some() {
        MessageKind::Call
    } else {
        MessageKind::Send
    };
    let message = Message::new(
        from,
        token.map_or(0, CallToken::to_raw),
        kind.code(),
        payload,
    );
    runtime
        .post_message(&service, message)
        .map_err(|(error, _)| format!("{what}: the cluster service is {error}"))
}

/// The caller and, for a call, a new token.
fn caller(lua: &Lua, what: &str, call: bool) -> Result<(u64, Option<CallToken>), String> {
    with_state(lua, |state| {
        (state.self_id, call.then(|| state.next_call_token()))
    })
    .map_err(|e| format!("{what}: {e}"))
}

/// Step 2 for sends and calls that carry values: `args` encoded once, and
/// published by the cluster service `to` (subject, node expected to serve
/// it or "" if unknown). The token of a call, or why
/// nothing was posted.
fn post_values(
    lua: &Lua,
    runtime: &Runtime,
    meta: SocketMeta,
    what: &str,
    call: bool,
    (subject, node): (&str, &str),
    args: &MultiValue,
) -> Result<Option<CallToken>, String> {
    if !CONNECTED.load(Ordering::Acquire) {
        return Err(format!(
            "{what}: the cluster is unreachable (no connection to NATS)"
        ));
    }
    let mut encoded = Vec::new();
    codec::encode(args.iter(), &mut encoded, meta).map_err(|e| match e {
        codec::CodecError::Socket => format!("{what}: a socket cannot be sent to another node"),
        e => format!("{what}: {e}"),
    })?;
    let op: &[u8] = if call { b"call" } else { b"send" };
    let mut payload = Vec::with_capacity(encoded.len() + subject.len() + node.len() + 40);
    codec::encode_integer_and_strings(
        secret(),
        &[op, subject.as_bytes(), node.as_bytes(), &encoded],
        &mut payload,
    );
    let (from, token) = caller(lua, what, call)?;
    post_payload(runtime, what, from, token, payload)?;
    Ok(token)
}

/// `lunet.send(remote, ...)` (`call` false) or `lunet.call(remote, ...)`:
/// the token of the call, or why nothing was posted.
pub(crate) fn post_remote(
    lua: &Lua,
    runtime: &Runtime,
    meta: SocketMeta,
    remote: &Remote,
    call: bool,
    args: &MultiValue,
) -> mlua::Result<Result<Option<CallToken>, String>> {
    let what = if call { "lunet.call" } else { "lunet.send" };
    caps::require(lua, Capability::Cluster, what)?;
    let subject = format!("lunet.n.{}.{}", remote.name, if call { "c" } else { "s" });
    Ok(post_values(
        lua,
        runtime,
        meta,
        what,
        call,
        (&subject, &remote.node),
        args,
    )
    .map_err(|e| format!("{e} ({})", describe(remote))))
}

fn describe(remote: &Remote) -> String {
    format!("'{}' of node '{}'", remote.name, remote.node)
}

/// The runtime of a process in a cluster (set by [`start`]).
static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Where the modules fetched from the cluster's store are written (set by
/// [`start`]; `model/modules.rs` looks there after the module path).
static FETCHED: OnceLock<PathBuf> = OnceLock::new();

/// The directory of modules fetched from the cluster, in a cluster.
pub(crate) fn fetched_modules() -> Option<&'static Path> {
    FETCHED.get().map(PathBuf::as_path)
}

/// Writes a fetched module where [`fetched_modules`] finds it.
fn store_module(name: &str, source: &[u8]) -> Result<(), String> {
    let dir = fetched_modules().ok_or("not in a cluster")?;
    crate::model::subs::check_module_name(name).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}.lua", name.replace('.', "/")));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&path, source).map_err(|e| format!("{}: {e}", path.display()))
}

/// Groups this node serves (the cluster service subscribed to them).
static SPANNED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// A runtime of this process joined `group`: in a cluster, its node
/// subscribes to the group's subjects the first time (`node.lua`:
/// groups), so members on other nodes reach it.
pub(crate) fn note_group(group: &str) {
    let Some(runtime) = RUNTIME.get() else {
        return;
    };
    if !SPANNED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(group.to_string())
    {
        return;
    }
    let mut payload = Vec::new();
    codec::encode_integer_and_strings(secret(), &[b"span", group.as_bytes()], &mut payload);
    if let Err(e) = post_payload(runtime, "g:join", 0, None, payload) {
        tracing::warn!("group '{group}' is not reachable from other nodes: {e}");
    }
}

/// Whether a group's name is a subject's tokens (groups are named
/// `a.b.c`): no empty token, no space, no wildcard.
fn check_group(name: &str) -> Result<(), String> {
    if name.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b > b' ' && b != b'*' && b != b'>' && b != 0x7f)
    }) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' cannot be a group of the cluster (no empty part, space, '*' or '>')"
        ))
    }
}

/// The cluster service's own calls are for it alone.
fn require_service(lua: &Lua, runtime: &Runtime, what: &str) -> mlua::Result<()> {
    let id = with_state(lua, |state| state.self_id)
        .map_err(|e| mlua::Error::runtime(format!("{what}: {e}")))?;
    if runtime.query_name(SERVICE_NAME) == Some(id) {
        Ok(())
    } else {
        Err(mlua::Error::runtime(format!(
            "{what}: only the cluster service calls it"
        )))
    }
}

/// Puts the cluster's Rust calls on `core`.
pub fn install(lua: &Lua, runtime: &Runtime, meta: SocketMeta, core: &Table) -> mlua::Result<()> {
    // (what, op, args...): the token of a call to the cluster service.
    let rt = runtime.clone();
    core.set(
        "cluster_request",
        lua.create_function(move |lua, (what, args): (String, MultiValue)| {
            caps::require(lua, Capability::Cluster, &what)?;
            let mut values = vec![Value::Integer(secret())];
            values.extend(args);
            let mut payload = Vec::new();
            let posted = codec::encode(values.iter(), &mut payload, meta)
                .map_err(|e| format!("{what}: {e}"))
                .and_then(|()| caller(lua, &what, true))
                .and_then(|(from, token)| {
                    post_payload(&rt, &what, from, token, payload).map(|()| token)
                });
            Ok(match posted {
                Ok(token) => (token, None),
                Err(e) => (None, Some(e)),
            })
        })?,
    )?;

    // Whether this service's group calls span the cluster.
    core.set(
        "cluster_spans",
        lua.create_function(|lua, ()| {
            Ok(RUNTIME.get().is_some()
                && with_state(lua, |state| state.caps.allows(Capability::Cluster))?)
        })?,
    )?;

    // (name, call, args...): `g:call` (the token) or `g:send` across the
    // cluster.
    let rt = runtime.clone();
    core.set(
        "cluster_group",
        lua.create_function(move |lua, (name, call, args): (String, bool, MultiValue)| {
            let what = if call { "g:call" } else { "g:send" };
            caps::require(lua, Capability::Cluster, what)?;
            let posted = check_group(&name)
                .map_err(|e| format!("{what}: {e}"))
                .and_then(|()| {
                    let subject = format!("lunet.g.{name}.{}", if call { "c" } else { "s" });
                    post_values(lua, &rt, meta, what, call, (&subject, ""), &args)
                });
            Ok(match posted {
                Ok(token) => (token, None),
                Err(e) => (None, Some(e)),
            })
        })?,
    )?;

    // A module this process lacks, from the cluster's store (model.lua:
    // fetch): the token of the call, or nil outside a cluster. Lunet's own
    // loading, so no capability is asked.
    let rt = runtime.clone();
    core.set(
        "module_fetch",
        lua.create_function(move |lua, name: String| {
            if RUNTIME.get().is_none() {
                return Ok(None);
            }
            let what = format!("fetching module {name}");
            let mut payload = Vec::new();
            codec::encode_integer_and_strings(secret(), &[b"fetch", name.as_bytes()], &mut payload);
            let (from, token) = caller(lua, &what, true).map_err(mlua::Error::runtime)?;
            post_payload(&rt, &what, from, token, payload).map_err(mlua::Error::runtime)?;
            Ok(token)
        })?,
    )?;

    core.set(
        "cluster_ref",
        lua.create_function(|lua, (name, node): (String, String)| {
            caps::require(lua, Capability::Cluster, "lunet.cluster.query")?;
            lua.create_userdata(Remote { name, node })
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "cluster_node",
        lua.create_function(move |lua, ()| {
            require_service(lua, &rt, "lunet.cluster.serve")?;
            NODE.function(lua)
        })?,
    )?;

    let rt = runtime.clone();
    core.set(
        "cluster_internals",
        lua.create_function(move |lua, ()| {
            require_service(lua, &rt, "lunet.cluster.serve")?;
            service_calls(lua, &rt, meta)
        })?,
    )?;
    Ok(())
}

/// Posts encoded values to `target`: (the token of a call or `true`,
/// nil) or (nil, why).
fn post_local(
    lua: &Lua,
    runtime: &Runtime,
    target: &Arc<lunet_core::Service>,
    call: bool,
    encoded: &[u8],
) -> mlua::Result<(Value, Option<String>)> {
    let (bytes, sub) = sub_message(encoded);
    let kind = match (call, sub) {
        (true, false) => MessageKind::Call,
        (true, true) => MessageKind::CallSub,
        (false, false) => MessageKind::Send,
        (false, true) => MessageKind::RunSub,
    };
    let (from, token) = with_state(lua, |state| {
        (state.self_id, call.then(|| state.next_call_token()))
    })?;
    let message = Message::new(from, token.map_or(0, CallToken::to_raw), kind.code(), bytes);
    match runtime.post_message(target, message) {
        Ok(()) => Ok((
            match token {
                Some(token) => mlua::IntoLua::into_lua(token, lua)?,
                None => Value::Boolean(true),
            },
            None,
        )),
        Err((error, _)) => Ok((Value::Nil, Some(error.to_string()))),
    }
}

/// Encoded values as a message's payload: unchanged, or, when the first
/// value is a Sub reference, a Sub message's (the Sub's id, then the other
/// values: `api::encode_message`). `true` for a Sub message.
fn sub_message(encoded: &[u8]) -> (Vec<u8>, bool) {
    let Some((count, values)) = encoded.split_first_chunk::<4>() else {
        return (encoded.to_vec(), false);
    };
    let count = u32::from_le_bytes(*count);
    match codec::sub_header(values) {
        Ok((length, _)) if count > 0 => {
            let mut payload = Vec::with_capacity(encoded.len());
            payload.extend_from_slice(&values[..length]);
            payload.extend_from_slice(&(count - 1).to_le_bytes());
            payload.extend_from_slice(&values[length..]);
            (payload, true)
        }
        _ => (encoded.to_vec(), false),
    }
}

/// The cluster service's calls for forwarded calls (`forward.rs`).
fn forward_calls(
    lua: &Lua,
    runtime: &Runtime,
    forwarded: &forward::Shared,
    calls: &Table,
) -> mlua::Result<()> {
    let shared = forwarded.clone();
    calls.set(
        "forward_inbox",
        lua.create_function(move |_, prefix: String| {
            forward::lock(&shared).set_prefix(&prefix);
            Ok(())
        })?,
    )?;
    let shared = forwarded.clone();
    calls.set(
        "forward",
        lua.create_function(
            move |_, (service, token, subject, node): (i64, i64, String, String)| {
                let caller = Caller {
                    service: service as u64,
                    token: CallToken::from_raw(token as u64),
                };
                let node = (!node.is_empty()).then_some(node);
                Ok(forward::lock(&shared).forward(caller, subject, node))
            },
        )?,
    )?;
    // (node|nil, text): fails the calls waiting on that node (all: nil).
    let (rt, shared) = (runtime.clone(), forwarded.clone());
    calls.set(
        "fail_forwarded",
        lua.create_function(move |lua, (node, text): (Option<String>, String)| {
            let failed = forward::lock(&shared).take_failed(node.as_deref());
            for caller in failed {
                forward::answer_once(lua, &rt, caller, MessageKind::Error, error_payload(&text))?;
            }
            Ok(())
        })?,
    )?;
    // (reply, text): fails the one call of that reply subject.
    let (rt, shared) = (runtime.clone(), forwarded.clone());
    calls.set(
        "fail_forwarded_one",
        lua.create_function(move |lua, (reply, text): (String, String)| {
            let failed = forward::lock(&shared).take_one(&reply);
            if let Some(caller) = failed {
                forward::answer_once(lua, &rt, caller, MessageKind::Error, error_payload(&text))?;
            }
            Ok(())
        })?,
    )?;
    Ok(())
}

/// The calls only the cluster service gets (step 3).
fn service_calls(lua: &Lua, runtime: &Runtime, meta: SocketMeta) -> mlua::Result<Table> {
    let calls = lua.create_table()?;
    calls.set("secret", secret())?;

    let forwarded = forward::Shared::default();
    let (rt, shared) = (runtime.clone(), forwarded.clone());
    calls.set(
        "read",
        lua.create_function(move |lua, args| read::read(lua, &rt, &shared, args))?,
    )?;
    forward_calls(lua, runtime, &forwarded, &calls)?;

    calls.set(
        "set_connected",
        lua.create_function(|_, up: bool| {
            CONNECTED.store(up, Ordering::Release);
            Ok(())
        })?,
    )?;

    // The values as the codec writes them (a string), or raises.
    calls.set(
        "pack",
        lua.create_function(move |lua, args: MultiValue| {
            let mut out = Vec::new();
            codec::encode(args.iter(), &mut out, meta)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
            lua.create_string(&out)
        })?,
    )?;

    // (handle, call, encoded): posts encoded values unchanged to a local
    // service. The token of a call, `true` for a send, or (nil, error).
    let rt = runtime.clone();
    calls.set(
        "post",
        lua.create_function(
            move |lua, (handle, call, encoded): (i64, bool, LuaString)| {
                let Some(target) = rt.service(handle as u64) else {
                    return Ok((Value::Nil, Some("dead".to_string())));
                };
                post_local(lua, &rt, &target, call, &encoded.as_bytes())
            },
        )?,
    )?;

    // (group, call, encoded): a call to one member of the group on this
    // node (as `post`), or a send to each (how many it reached).
    let rt = runtime.clone();
    calls.set(
        "group_post",
        lua.create_function(
            move |lua, (group, call, encoded): (String, bool, LuaString)| {
                if call {
                    let Some(target) = groups::pick(&rt, &group) else {
                        return Ok((Value::Nil, Some("without members".to_string())));
                    };
                    return post_local(lua, &rt, &target, call, &encoded.as_bytes());
                }
                let mut reached = 0;
                for groups::Member::Local(id) in groups::members(&group) {
                    if let Some(target) = rt.service(id) {
                        if post_local(lua, &rt, &target, false, &encoded.as_bytes())?
                            .1
                            .is_none()
                        {
                            reached += 1;
                        }
                    }
                }
                Ok((Value::Integer(reached), None))
            },
        )?,
    )?;

    // `take_call()`: takes the answer of the call the running session
    // answers, as `lunet.response` does, and returns who waits for it
    // (service, token), for `forward` (forward.rs answers it once). Two
    // integers instead of a function per call: the cluster service
    // forwards every remote call this way.
    calls.set(
        "take_call",
        lua.create_function(|lua, ()| {
            let taken = with_state(lua, |state| {
                let call = state.calls.remove(&state.running.session())?;
                state.delayed.insert(call);
                Some(call)
            })?;
            let caller = taken.ok_or_else(|| {
                mlua::Error::runtime("cluster: this session is not answering a call")
            })?;
            Ok((caller.service as i64, caller.token.to_raw() as i64))
        })?,
    )?;
    calls.set(
        "store_module",
        lua.create_function(|_, (name, source): (String, LuaString)| {
            store_module(&name, &source.as_bytes()).map_err(|e| {
                mlua::Error::runtime(format!(
                    "cannot keep module {name} fetched from the cluster: {e}"
                ))
            })
        })?,
    )?;

    // `cluster.nodeup` and `cluster.nodedown` are events of this service,
    // so `lunet.attach` from other services reaches them (model/events.rs).
    calls.set(
        "define_events",
        lua.create_function(|lua, names: Vec<String>| {
            Ok(with_state(lua, |state| {
                for name in &names {
                    state.model.events.define(name);
                }
            })?)
        })?,
    )?;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_service_compiles_and_names_are_checked() {
        NODE.function(&Lua::new()).unwrap();
        assert!(check_name("front-1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "a\tb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_group("userinfo.client").is_ok());
        for bad in ["a..b", ".a", "a.", "a.*", "a b"] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_sub_first_becomes_a_sub_message() {
        let lua = Lua::new();
        let sub =
            crate::model::subs::SubRef(Arc::new(crate::model::subs::SubId::new("m", "1", "s")));
        let values = [
            Value::UserData(lua.create_userdata(sub).unwrap()),
            Value::Integer(7),
        ];
        let mut encoded = Vec::new();
        codec::encode(values.iter(), &mut encoded, SocketMeta::none()).unwrap();
        let (payload, is_sub) = sub_message(&encoded);
        assert!(is_sub);
        let (length, parts) = codec::sub_header(&payload).unwrap();
        assert_eq!(parts, [&b"m"[..], b"1", b"s"]);
        let rest = codec::decode(&lua, &payload[length..]).unwrap();
        assert_eq!(
            rest.into_iter().collect::<Vec<_>>(),
            vec![Value::Integer(7)]
        );
        let (plain, is_sub) = sub_message(&encoded[..4]);
        assert!(!is_sub);
        assert_eq!(plain, &encoded[..4]);
    }
}
