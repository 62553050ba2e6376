//! The actor half of the `lunet` module: spawn, send, call, names, exit,
//! delayed answers and wait/wakeup. Messages travel as `Event::Message`
//! with a payload made by `codec.rs`; kinds are `protocol::MessageKind`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lunet_core::{Message, PostError, Service};
use mlua::{Lua, MultiValue, Table, Thread, Value};

use crate::api::Shared;
use crate::codec::{self, CodecError};
use crate::host::{LuaService, Script, ServiceOptions};
use crate::protocol::MessageKind;

fn runtime_error(message: impl Into<String>) -> mlua::Error {
    mlua::Error::runtime(message.into())
}

fn codec_error(what: &str, e: CodecError) -> mlua::Error {
    runtime_error(format!("{what}: {e}"))
}

/// A handle (integer) or a registered name.
fn target(shared: &Shared, handle: &Value) -> Result<Arc<Service>, String> {
    let id = match handle {
        Value::Integer(id) => *id as u64,
        Value::Number(f) => *f as u64,
        Value::String(name) => {
            let name = name.to_string_lossy();
            shared
                .runtime
                .query_name(&name)
                .ok_or_else(|| format!("no service is named '{name}'"))?
        }
        other => {
            return Err(format!(
                "expected a service handle or name, got {}",
                other.type_name()
            ))
        }
    };
    shared.runtime.service(id).ok_or_else(|| DEAD.to_string())
}

/// What `target` says of a handle whose service is gone.
const DEAD: &str = "dead";

fn describe(handle: &Value) -> String {
    match handle {
        Value::Integer(id) => format!(":{id}"),
        Value::Number(f) => format!(":{f}"),
        Value::String(name) => format!("'{}'", name.to_string_lossy()),
        other => other.type_name().to_string(),
    }
}

pub fn self_id(shared: &Shared) -> u64 {
    shared.service().map_or(0, |s| s.id())
}

/// Sends an answer (or an error) to a caller.
pub fn answer(shared: &Shared, to: u64, session: u64, kind: MessageKind, payload: Vec<u8>) -> bool {
    match shared.runtime.service(to) {
        Some(service) => shared.runtime.post(
            &service,
            lunet_core::Event::Message(Message::new(
                self_id(shared),
                session,
                kind.code(),
                payload,
            )),
        ),
        None => false,
    }
}

/// An error answer's payload: one string.
pub fn error_payload(message: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    let _ = codec::encode_str(message, &mut payload);
    payload
}

pub fn build(lua: &Lua, shared: &Shared, core: &Table) -> mlua::Result<()> {
    let sh = shared.clone();
    core.set(
        "self",
        lua.create_function(move |_, ()| Ok(self_id(&sh) as i64))?,
    )?;

    let sh = shared.clone();
    core.set(
        "send",
        lua.create_function(move |_, (handle, args): (Value, MultiValue)| {
            let target = match target(&sh, &handle) {
                Ok(t) => t,
                Err(e) => return Ok((None, Some(e))),
            };
            let mut payload = Vec::new();
            codec::encode(args.iter(), &mut payload).map_err(|e| codec_error("lunet.send", e))?;
            let message = Message::new(self_id(&sh), 0, MessageKind::Send.code(), payload);
            match sh.runtime.post_message(&target, message) {
                Ok(()) => Ok((Some(true), None)),
                Err((PostError::Overloaded, _)) => Ok((None, Some("overloaded".to_string()))),
                Err((PostError::Dead, _)) => Ok((None, Some("dead".to_string()))),
            }
        })?,
    )?;

    // Posts the request; the wrapper then yields OP_CALL and gets
    // (true, answer...) or (false, error).
    let sh = shared.clone();
    core.set(
        "call",
        lua.create_function(
            move |_,
                  (handle, args): (Value, MultiValue)|
                  -> mlua::Result<(Option<i64>, Option<String>)> {
                let target = match target(&sh, &handle) {
                    Ok(target) => target,
                    Err(e) if e == DEAD => {
                        return Ok((
                            None,
                            Some(format!("lunet.call: service {} is dead", describe(&handle))),
                        ))
                    }
                    Err(e) => return Ok((None, Some(format!("lunet.call: {e}")))),
                };
                let mut payload = Vec::new();
                if let Err(e) = codec::encode(args.iter(), &mut payload) {
                    return Ok((None, Some(format!("lunet.call: {e}"))));
                }
                let token = call_token(&sh);
                let message = Message::new(self_id(&sh), token, MessageKind::Call.code(), payload);
                match sh.runtime.post_message(&target, message) {
                    Ok(()) => Ok((Some(token as i64), None)),
                    Err((PostError::Overloaded, _)) => Ok((
                        None,
                        Some(format!(
                            "lunet.call: service :{} is overloaded",
                            target.id()
                        )),
                    )),
                    Err((PostError::Dead, _)) => Ok((
                        None,
                        Some(format!("lunet.call: service :{} is dead", target.id())),
                    )),
                }
            },
        )?,
    )?;

    let sh = shared.clone();
    core.set(
        "spawn",
        lua.create_function(move |lua, (options, args): (Table, MultiValue)| {
            match spawn(&sh, options, args) {
                Ok((handle, token)) => Ok((Some(handle), Value::Integer(token as i64))),
                Err(e) => Ok((None, Value::String(lua.create_string(&e)?))),
            }
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "exit",
        lua.create_function(move |_, ()| {
            sh.lock()?.exiting = true;
            Ok(())
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "kill",
        lua.create_function(move |_, handle: Value| {
            let target = match target(&sh, &handle) {
                Ok(t) => t,
                Err(_) => return Ok(false),
            };
            if target.id() == self_id(&sh) {
                sh.lock()?.exiting = true;
                return Ok(true);
            }
            Ok(sh
                .runtime
                .kill(&target, Message::signal(MessageKind::Kill.code())))
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "register",
        lua.create_function(move |_, name: String| {
            if name.is_empty() {
                return Ok((
                    false,
                    Some("lunet.register: the name must not be empty".to_string()),
                ));
            }
            match sh.runtime.register_name(&name, self_id(&sh)) {
                Ok(()) => Ok((true, None)),
                Err(owner) => Ok((
                    false,
                    Some(format!(
                        "lunet.register: '{name}' is already the name of service :{owner}"
                    )),
                )),
            }
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "query",
        lua.create_function(move |_, name: String| {
            Ok(sh.runtime.query_name(&name).map(|id| id as i64))
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "set_dispatch",
        lua.create_function(move |_, ()| {
            sh.lock()?.dispatch = true;
            Ok(())
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "response",
        lua.create_function(move |lua, ()| {
            let (to, session) = {
                let mut state = sh.lock()?;
                let current = sh.current.load(Ordering::Relaxed);
                let Some(call) = state.calls.remove(&current) else {
                    return Err(runtime_error(
                        "lunet.response: this session is not answering a call (or already took its answer)",
                    ));
                };
                state.delayed.insert(call, ());
                call
            };
            let used = Arc::new(AtomicBool::new(false));
            let sh = sh.clone();
            let reply = lua.create_function(move |_, args: MultiValue| {
                if used.swap(true, Ordering::SeqCst) {
                    return Ok(false);
                }
                let mut payload = Vec::new();
                let kind = match codec::encode(args.iter(), &mut payload) {
                    Ok(()) => MessageKind::Response,
                    Err(e) => {
                        payload = error_payload(&format!("the answer could not be sent: {e}"));
                        MessageKind::Error
                    }
                };
                sh.lock()?.delayed.remove(&(to, session));
                Ok(answer(&sh, to, session, kind, payload))
            })?;
            Ok(reply)
        })?,
    )?;

    let sh = shared.clone();
    core.set(
        "wakeup",
        lua.create_function(move |_, co: Thread| {
            let mut state = sh.lock()?;
            match state.suspended.remove(&(co.to_pointer() as usize)) {
                Some(sid) => {
                    state.wakeups.push(sid);
                    Ok(true)
                }
                None => Ok(false),
            }
        })?,
    )?;

    Ok(())
}

fn spawn(shared: &Shared, options: Table, args: MultiValue) -> Result<(i64, u64), String> {
    spawn_inner(shared, options, args).map_err(|e| match e {
        mlua::Error::RuntimeError(message) => message,
        other => other.to_string(),
    })
}

fn spawn_inner(shared: &Shared, options: Table, args: MultiValue) -> mlua::Result<(i64, u64)> {
    let script: String = options
        .get::<Option<String>>("script")?
        .ok_or_else(|| runtime_error("lunet.spawn: a script path is required"))?;
    let name: Option<String> = options.get("name")?;
    let memory: Option<i64> = options.get("memory")?;
    let mailbox: Option<i64> = options.get("mailbox")?;
    let trusted: bool = options.get::<Option<bool>>("trusted")?.unwrap_or(false);
    let settings = shared.lock()?.settings.clone();
    let path = resolve_script(&script, settings.script_dir.as_deref())
        .ok_or_else(|| runtime_error(format!("lunet.spawn: cannot find script '{script}'")))?;
    // A script is read here, on the worker: it is small and in the page cache
    // in practice (skynet does the same); a tool that spawns from slow storage
    // should read it with lunet.fs.read first.
    let source = std::fs::read(&path)
        .map_err(|e| runtime_error(format!("lunet.spawn: cannot read {}: {e}", path.display())))?;
    let mut payload = Vec::new();
    codec::encode(args.iter(), &mut payload).map_err(|e| codec_error("lunet.spawn", e))?;
    let script = Script {
        path: path.display().to_string(),
        source,
    };
    let label = name.clone().unwrap_or_else(|| script.path.clone());
    let service_options = ServiceOptions {
        trusted,
        memory_limit: memory.filter(|m| *m > 0).map(|m| m as usize),
    };
    let body = LuaService::build(
        &shared.runtime,
        &label,
        settings,
        &script,
        None,
        service_options,
        &|_| Ok(()),
    )
    .map_err(|e| runtime_error(format!("lunet.spawn: {e}")))?;
    let service = shared.runtime.spawn_service(&label, Box::new(body));
    if let Some(cap) = mailbox.filter(|m| *m > 0) {
        service.set_mailbox_cap(cap as usize);
    }
    // START goes in first: the mailbox keeps order, so a message sent by
    // someone who finds the name runs after the main chunk has begun.
    let session = call_token(shared);
    shared.runtime.post(
        &service,
        lunet_core::Event::Message(Message::new(
            self_id(shared),
            session,
            MessageKind::Start.code(),
            payload,
        )),
    );
    if let Some(name) = &name {
        if let Err(owner) = shared.runtime.register_name(name, service.id()) {
            shared.runtime.post(
                &service,
                lunet_core::Event::Message(Message::signal(MessageKind::Kill.code())),
            );
            return Err(runtime_error(format!(
                "lunet.spawn: '{name}' is already the name of service :{owner}"
            )));
        }
    }
    Ok((service.id() as i64, session))
}

/// The id of a call: the calling session's slot and a sequence number, so
/// an answer that comes after its caller stopped waiting (an error was
/// raised, the slot was reused) never wakes the wrong wait.
fn call_token(shared: &Shared) -> u64 {
    let slot = crate::slab::index_of(shared.current.load(Ordering::Relaxed)) as u64;
    let seq = shared.next_call.fetch_add(1, Ordering::Relaxed) as u64 & 0x3FFF_FFFF;
    (seq << 32) | slot
}

fn resolve_script(script: &str, dir: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    let direct = std::path::PathBuf::from(script);
    if direct.is_file() {
        return Some(direct);
    }
    let in_dir = dir?.join(script);
    in_dir.is_file().then_some(in_dir)
}
