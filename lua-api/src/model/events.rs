//! Events: `M.event(name)` defines `module.name` in a runtime; `M.fire`
//! and `lunet.fire` fire it; `lunet.attach` attaches a function to it.
//!
//! Protocol:
//! 1. An event is defined in the runtimes that run its module. Each keeps,
//!    per event, who is attached: its own functions (`lunet.attach(event,
//!    fn)`, by slot) and other runtimes' attachments (attacher, attachment
//!    id).
//! 2. `lunet.attach(h, event, fn)` ("black box"): the attacher keeps `fn`
//!    under a new attachment id and calls `h` with `Attach` (the id, the
//!    event); `h` checks, in Rust, that it defines the event, records the
//!    attachment and answers. The call raises at the attacher if not.
//! 3. `g:attach(event, fn)`: the attacher keeps `fn` the same way and the
//!    group directory records the watch (`groups.rs`): no message.
//! 4. Firing: a function attached here runs as a new session of this
//!    runtime with the event's values; every other attachment, direct or
//!    through a group of the firing runtime, gets a `Fired` message (the
//!    values encoded once; `session` names the attachment), and the
//!    attacher runs its function in a new session with the firing
//!    runtime's handle first. Deliveries are messages on the one path,
//!    in order per (firing runtime, attacher).
//! 5. Attachments end when either side exits: the firing runtime drops an
//!    attacher whose mailbox refuses a delivery as dead; an attacher
//!    forgets attachments to runtimes that are gone as its table grows
//!    (pruned each time it doubles), and a group forgets a watch whose
//!    attacher exits.

use std::collections::HashMap;

use lunet_core::{Message, PostError, Runtime};
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::functions;
use super::groups;
use crate::codec::{self, SocketMeta};
use crate::ids::CallToken;
use crate::protocol::MessageKind;
use crate::state::{with_state, Fork};

/// Who is attached to one event defined here (step 1).
#[derive(Clone, Debug, Default)]
struct Attached {
    local: Vec<u32>,
    /// (attacher, attachment id).
    remote: Vec<(u64, u64)>,
}

/// Where an attachment made here points.
#[derive(Clone, Copy, Debug)]
enum Target {
    Runtime(u64),
    Group,
}

/// An attachment this runtime made to others' events.
#[derive(Clone, Copy, Debug)]
struct Made {
    slot: u32,
    target: Target,
}

/// The events part of a runtime's model state.
#[derive(Debug, Default)]
pub(crate) struct Events {
    defined: HashMap<String, Attached>,
    made: HashMap<u64, Made>,
    next_id: u64,
    /// Step 5: `made` is pruned when it reaches this size.
    prune_at: usize,
}

/// Why an attachment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{what}: the event must be a string like 'module.name', got {got}")]
    NotAString {
        what: &'static str,
        got: &'static str,
    },
    #[error("{what}: this runtime does not define the event '{event}' ({defines})")]
    Undefined {
        what: &'static str,
        event: String,
        defines: String,
    },
}

impl Events {
    /// Defines an event (step 1); attachments of an existing one stay.
    pub(crate) fn define(&mut self, event: &str) {
        self.defined.entry(event.to_string()).or_default();
    }

    /// The event is gone (its module's new code does not define it): the
    /// slots of its local attachments, to give back.
    pub(crate) fn remove(&mut self, event: &str) -> Vec<u32> {
        self.defined
            .remove(event)
            .map(|attached| attached.local)
            .unwrap_or_default()
    }

    /// Whether attachments made here wait for deliveries.
    pub(crate) fn waits(&self) -> bool {
        !self.made.is_empty()
    }

    fn undefined(&self, what: &'static str, event: &str) -> EventError {
        let mut names: Vec<&str> = self.defined.keys().map(String::as_str).collect();
        names.sort_unstable();
        EventError::Undefined {
            what,
            event: event.to_string(),
            defines: if names.is_empty() {
                "it defines none".to_string()
            } else {
                format!("it defines {}", names.join(", "))
            },
        }
    }

    /// Step 2, at the firing runtime: `attacher`'s attachment `id`.
    pub(crate) fn attach_remote(
        &mut self,
        event: &str,
        attacher: u64,
        id: u64,
    ) -> Result<(), EventError> {
        let error = self.undefined("lunet.attach", event);
        let attached = self.defined.get_mut(event).ok_or(error)?;
        attached.remote.push((attacher, id));
        Ok(())
    }

    /// Notes an attachment made here; forgets the ones whose runtime is
    /// gone each time the table doubles (step 5).
    fn note_made(&mut self, runtime: &Runtime, slot: u32, target: Target) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.made.insert(id, Made { slot, target });
        if self.made.len() >= self.prune_at.max(64) {
            self.made.retain(|_, made| match made.target {
                Target::Runtime(target) => runtime.service(target).is_some(),
                Target::Group => true,
            });
            self.prune_at = self.made.len() * 2;
        }
        id
    }

    /// The slot of the function of attachment `id` made here.
    pub(crate) fn slot_of(&self, id: u64) -> Option<u32> {
        self.made.get(&id).map(|made| made.slot)
    }
}

fn runtime_error(error: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(error.to_string())
}

fn event_name(what: &'static str, event: Value) -> mlua::Result<String> {
    match event {
        Value::String(name) => Ok(name.to_str()?.to_string()),
        other => Err(runtime_error(EventError::NotAString {
            what,
            got: other.type_name(),
        })),
    }
}

/// What became of a delivery (step 4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Sent,
    /// The attacher is gone: forget it (step 5).
    Gone,
    /// Its mailbox is full: this delivery is lost, with a log line.
    Dropped,
}

fn deliver(runtime: &Runtime, from: u64, attacher: u64, id: u64, payload: &[u8]) -> Delivery {
    let Some(target) = runtime.service(attacher) else {
        return Delivery::Gone;
    };
    let message = Message::new(from, id, MessageKind::Fired.code(), payload.to_vec());
    match runtime.post_message(&target, message) {
        Ok(()) => Delivery::Sent,
        Err((PostError::Dead, _)) => Delivery::Gone,
        Err((PostError::Overloaded, _)) => {
            tracing::warn!(
                attacher,
                "an event was not delivered to :{attacher}: its mailbox is full"
            );
            Delivery::Dropped
        }
    }
}

/// Step 4: fires `event` with `args`; the number of attachments reached.
fn fire(
    lua: &Lua,
    runtime: &Runtime,
    meta: SocketMeta,
    what: &'static str,
    event: &str,
    args: MultiValue,
) -> mlua::Result<usize> {
    let (from, attached) = with_state(lua, |state| {
        let events = &state.model.events;
        match events.defined.get(event) {
            Some(attached) => Ok((state.self_id, attached.clone())),
            None => Err(events.undefined(what, event)),
        }
    })?
    .map_err(runtime_error)?;
    let watchers = groups::watchers(from, event);
    let mut reached = 0;
    if !attached.remote.is_empty() || !watchers.is_empty() {
        let mut payload = Vec::new();
        codec::encode(args.iter(), &mut payload, meta)
            .map_err(|e| runtime_error(format!("{what}: {e}")))?;
        let mut gone = Vec::new();
        for &(attacher, id) in &attached.remote {
            match deliver(runtime, from, attacher, id, &payload) {
                Delivery::Sent => reached += 1,
                Delivery::Gone => gone.push((attacher, id)),
                Delivery::Dropped => {}
            }
        }
        for &(attacher, id) in &watchers {
            match deliver(runtime, from, attacher, id, &payload) {
                Delivery::Sent => reached += 1,
                Delivery::Gone => groups::forget(attacher),
                Delivery::Dropped => {}
            }
        }
        if !gone.is_empty() {
            with_state(lua, |state| {
                if let Some(attached) = state.model.events.defined.get_mut(event) {
                    attached.remote.retain(|pair| !gone.contains(pair));
                }
            })?;
        }
    }
    if !attached.local.is_empty() {
        let table = functions(lua)?;
        let mut forks = Vec::with_capacity(attached.local.len());
        for slot in &attached.local {
            if let Value::Function(function) = table.raw_get(*slot)? {
                forks.push(Fork {
                    function,
                    args: args.clone(),
                });
            }
        }
        reached += forks.len();
        with_state(lua, |state| state.forks.extend(forks))?;
    }
    Ok(reached)
}

/// Keeps `function` under a new slot and notes an attachment made here to
/// `target`: its id.
pub(crate) fn note_attachment(
    lua: &Lua,
    runtime: &Runtime,
    function: Function,
    group: bool,
    target: u64,
) -> mlua::Result<u64> {
    let (slot, id) = with_state(lua, |state| {
        let model = &mut state.model;
        let slot = model.slots.take();
        let target = if group {
            Target::Group
        } else {
            Target::Runtime(target)
        };
        (slot, model.events.note_made(runtime, slot, target))
    })?;
    functions(lua)?.raw_set(slot, function)?;
    Ok(id)
}

/// Forgets attachment `id` made here.
fn detach(lua: &Lua, id: u64) -> mlua::Result<bool> {
    let slot = with_state(lua, |state| {
        let model = &mut state.model;
        let made = model.events.made.remove(&id)?;
        model.slots.give_back(made.slot);
        Some(made.slot)
    })?;
    if let Some(slot) = slot {
        functions(lua)?.raw_set(slot, Value::Nil)?;
    }
    Ok(slot.is_some())
}

/// Adds the event calls to `core`.
pub fn install(lua: &Lua, runtime: &Runtime, meta: SocketMeta, core: &Table) -> mlua::Result<()> {
    let rt = runtime.clone();
    core.set(
        "fire",
        lua.create_function(
            move |lua, (what, event, args): (String, Value, MultiValue)| {
                let what = if what == "M.fire" {
                    "M.fire"
                } else {
                    "lunet.fire"
                };
                let event = event_name(what, event)?;
                fire(lua, &rt, meta, what, &event, args)
            },
        )?,
    )?;

    core.set(
        "attach_local",
        lua.create_function(|lua, (event, function): (Value, Function)| {
            let event = event_name("lunet.attach", event)?;
            let slot = with_state(lua, |state| {
                let model = &mut state.model;
                let error = model.events.undefined("lunet.attach", &event);
                let attached = model.events.defined.get_mut(&event).ok_or(error)?;
                let slot = model.slots.take();
                attached.local.push(slot);
                Ok::<_, EventError>(slot)
            })?
            .map_err(runtime_error)?;
            functions(lua)?.raw_set(slot, function)?;
            Ok(true)
        })?,
    )?;

    // Step 2, at the attacher: (token, nil, id) to wait on, or (nil, error).
    let rt = runtime.clone();
    core.set(
        "attach_remote",
        lua.create_function(
            move |lua,
                  (handle, event, function): (Value, Value, Function)|
                  -> mlua::Result<(Option<CallToken>, Option<String>, Option<u64>)> {
                let event = event_name("lunet.attach", event)?;
                let target = match crate::api::target(&rt, &handle) {
                    Ok(target) => target,
                    Err(e) => {
                        let text = crate::api::target_error("lunet.attach", &handle, e);
                        return Ok((None, Some(text), None));
                    }
                };
                let id = note_attachment(lua, &rt, function, false, target.id())?;
                let (from, token) =
                    with_state(lua, |state| (state.self_id, state.next_call_token()))?;
                let mut payload = id.to_le_bytes().to_vec();
                payload.extend_from_slice(event.as_bytes());
                let message =
                    Message::new(from, token.to_raw(), MessageKind::Attach.code(), payload);
                match rt.post_message(&target, message) {
                    Ok(()) => Ok((Some(token), None, Some(id))),
                    Err((error, _)) => {
                        detach(lua, id)?;
                        Ok((
                            None,
                            Some(format!("lunet.attach: service :{} is {error}", target.id())),
                            None,
                        ))
                    }
                }
            },
        )?,
    )?;

    core.set(
        "detach",
        lua.create_function(|lua, id: u64| detach(lua, id))?,
    )?;
    Ok(())
}

/// Step 2 at the firing runtime: the payload of an `Attach` message.
pub fn parse_attach(payload: &[u8]) -> Option<(u64, &str)> {
    let id = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let event = std::str::from_utf8(payload.get(8..)?).ok()?;
    Some((id, event))
}
