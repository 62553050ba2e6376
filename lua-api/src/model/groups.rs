//! Groups: named sets of runtimes, kept in one process-wide directory
//! (`lunet.group(name)`, `spawn{group = name}`).
//!
//! Protocol:
//! 1. The directory holds, per group, its members and its watches: the
//!    attachments made with `g:attach(event, fn)`, each a runtime (the
//!    attacher, where `fn` runs) and the id of its attachment there. A
//!    watch is the group's, not a member's: a member that joins later is
//!    watched too.
//! 2. Operations on a group read the directory under its lock and then
//!    post ordinary messages (`Send`, `Call`, `RunSub`, `CallSub`,
//!    `Fired`) outside it: the directory says who, the one message path
//!    carries what.
//! 3. A runtime that fires an event asks [`watchers`] which watches of its
//!    groups want it; while the process has no watch at all that costs
//!    one atomic load, no lock.
//! 4. A runtime that exits is dropped from every group and its watches
//!    end ([`forget`], called by the VM's exit). A post that finds a
//!    member dead (it exited some other way) drops it too.
//!
//! Members are [`Member`]s: local handles today; a member on another node
//! (issue 12's cluster) is one more variant, reached by the same posts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use lunet_core::{Message, PostError, Runtime, Service};
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::events::note_attachment;
use super::subs::check_name;
use crate::api::encode_message;
use crate::codec::SocketMeta;
use crate::ids::CallToken;
use crate::protocol::MessageKind;
use crate::state::with_state;

/// A member of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Member {
    /// A runtime of this process, by handle.
    Local(u64),
}

/// An attachment of a runtime to an event of every member (step 1).
struct Watch {
    attacher: u64,
    attachment: u64,
    event: String,
}

#[derive(Default)]
struct Group {
    members: Vec<Member>,
    watches: Vec<Watch>,
}

#[derive(Default)]
struct Directory {
    groups: HashMap<String, Group>,
    /// The groups each runtime is a member of.
    member_of: HashMap<u64, Vec<String>>,
    /// The groups each runtime watches.
    watching: HashMap<u64, Vec<String>>,
}

static DIRECTORY: LazyLock<Mutex<Directory>> = LazyLock::new(Mutex::default);
/// Watches in the directory (step 3).
static WATCHES: AtomicUsize = AtomicUsize::new(0);
/// Drives the choice of `g:call` (step 2).
static PICKS: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

fn directory() -> MutexGuard<'static, Directory> {
    DIRECTORY.lock().unwrap_or_else(|e| e.into_inner())
}

fn note(index: &mut HashMap<u64, Vec<String>>, runtime: u64, group: &str) {
    let groups = index.entry(runtime).or_default();
    if !groups.iter().any(|g| g == group) {
        groups.push(group.to_string());
    }
}

impl Directory {
    /// Drops a group nobody is in or watches any more.
    fn tidy(&mut self, group: &str) {
        if self
            .groups
            .get(group)
            .is_some_and(|g| g.members.is_empty() && g.watches.is_empty())
        {
            self.groups.remove(group);
        }
    }
}

/// Adds `member` to `group`; false if it was in already.
pub fn join(group: &str, member: u64) -> bool {
    crate::cluster::note_group(group);
    let mut directory = directory();
    let entry = directory.groups.entry(group.to_string()).or_default();
    if entry.members.contains(&Member::Local(member)) {
        return false;
    }
    entry.members.push(Member::Local(member));
    note(&mut directory.member_of, member, group);
    true
}

/// Takes `member` out of `group`; false if it was not in.
pub fn leave(group: &str, member: u64) -> bool {
    let mut directory = directory();
    let Some(entry) = directory.groups.get_mut(group) else {
        return false;
    };
    let before = entry.members.len();
    entry.members.retain(|m| *m != Member::Local(member));
    let left = entry.members.len() < before;
    if let Some(groups) = directory.member_of.get_mut(&member) {
        groups.retain(|g| g != group);
    }
    directory.tidy(group);
    left
}

/// The members of `group`, in the order they joined.
pub fn members(group: &str) -> Vec<Member> {
    directory()
        .groups
        .get(group)
        .map(|g| g.members.clone())
        .unwrap_or_default()
}

/// Step 1: `attacher`'s attachment `attachment` watches `event` in every
/// member of `group`.
pub fn watch(group: &str, attacher: u64, attachment: u64, event: &str) {
    let mut directory = directory();
    directory
        .groups
        .entry(group.to_string())
        .or_default()
        .watches
        .push(Watch {
            attacher,
            attachment,
            event: event.to_string(),
        });
    note(&mut directory.watching, attacher, group);
    WATCHES.fetch_add(1, Ordering::Relaxed);
}

/// Step 3: the attachments (attacher, attachment id) that watch `event`
/// in a group `member` belongs to.
pub fn watchers(member: u64, event: &str) -> Vec<(u64, u64)> {
    if WATCHES.load(Ordering::Relaxed) == 0 {
        return Vec::new();
    }
    let directory = directory();
    let Some(groups) = directory.member_of.get(&member) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for name in groups {
        let Some(group) = directory.groups.get(name) else {
            continue;
        };
        for watch in group.watches.iter().filter(|w| w.event == event) {
            found.push((watch.attacher, watch.attachment));
        }
    }
    found
}

/// Step 4: `runtime` is gone: out of every group, its watches ended.
pub fn forget(runtime: u64) {
    let mut directory = directory();
    let member_of = directory.member_of.remove(&runtime).unwrap_or_default();
    let watching = directory.watching.remove(&runtime).unwrap_or_default();
    let mut ended = 0;
    for name in member_of.iter().chain(&watching) {
        if let Some(group) = directory.groups.get_mut(name) {
            group.members.retain(|m| *m != Member::Local(runtime));
            let before = group.watches.len();
            group.watches.retain(|w| w.attacher != runtime);
            ended += before - group.watches.len();
        }
        directory.tidy(name);
    }
    WATCHES.fetch_sub(ended, Ordering::Relaxed);
}

/// Two members of `group` chosen at random (the same one twice if it has
/// one), for `g:call` to take the less loaded of (the power of two
/// choices); `None` if it has no member.
pub fn two_choices(group: &str) -> Option<(Member, Member)> {
    let directory = directory();
    let members = &directory.groups.get(group)?.members;
    if members.is_empty() {
        return None;
    }
    // A step of a 64-bit LCG (Knuth's MMIX constants): no lock, no syscall.
    let draw = PICKS
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let n = members.len();
    let first = (draw >> 33) as usize % n;
    let second = if n == 1 {
        first
    } else {
        (first + 1 + (draw >> 13) as usize % (n - 1)) % n
    };
    Some((members[first], members[second]))
}

fn runtime_error(error: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(error.to_string())
}

fn group_name(what: &'static str, name: String) -> mlua::Result<String> {
    check_name("group", &name).map_err(|e| runtime_error(format!("{what}: {e}")))?;
    Ok(name)
}

/// The runtime `handle` names, or the caller when it is nil.
fn member_id(lua: &Lua, runtime: &Runtime, handle: &Value, what: &str) -> mlua::Result<u64> {
    if *handle == Value::Nil {
        return Ok(with_state(lua, |state| state.self_id)?);
    }
    crate::api::target(runtime, handle)
        .map(|service| service.id())
        .map_err(|e| runtime_error(crate::api::target_error(what, handle, e)))
}

/// Of two members, the live one with the shorter mailbox; a dead one is
/// forgotten (step 4).
fn less_loaded(runtime: &Runtime, a: Member, b: Member) -> Option<Arc<Service>> {
    let live = |member: Member| {
        let Member::Local(id) = member;
        let service = runtime.service(id);
        if service.is_none() {
            forget(id);
        }
        service
    };
    let first = live(a);
    if a == b {
        return first;
    }
    match (first, live(b)) {
        (Some(x), Some(y)) => Some(if y.mailbox_len() < x.mailbox_len() {
            y
        } else {
            x
        }),
        (x, y) => x.or(y),
    }
}

/// How many times `g:call` draws again after meeting dead members.
const CALL_DRAWS: usize = 8;

/// A live member of `group` for a call (the less loaded of two drawn),
/// or `None` if it has none.
pub(crate) fn pick(runtime: &Runtime, group: &str) -> Option<Arc<Service>> {
    (0..CALL_DRAWS).find_map(|_| {
        let (a, b) = two_choices(group)?;
        less_loaded(runtime, a, b)
    })
}

/// Adds the group calls to `core` (step 2).
pub fn install(lua: &Lua, runtime: &Runtime, meta: SocketMeta, core: &Table) -> mlua::Result<()> {
    let rt = runtime.clone();
    core.set(
        "group_join",
        lua.create_function(move |lua, (name, handle): (String, Value)| {
            let name = group_name("g:join", name)?;
            let id = member_id(lua, &rt, &handle, "g:join")?;
            Ok(join(&name, id))
        })?,
    )?;
    let rt = runtime.clone();
    core.set(
        "group_leave",
        lua.create_function(move |lua, (name, handle): (String, Value)| {
            let name = group_name("g:leave", name)?;
            let id = member_id(lua, &rt, &handle, "g:leave")?;
            Ok(leave(&name, id))
        })?,
    )?;
    core.set(
        "group_members",
        lua.create_function(|lua, name: String| {
            let name = group_name("g:members", name)?;
            lua.create_sequence_from(members(&name).into_iter().map(|member| {
                let Member::Local(id) = member;
                id as i64
            }))
        })?,
    )?;

    // The number of members the message reached.
    let rt = runtime.clone();
    core.set(
        "group_send",
        lua.create_function(move |lua, (name, args): (String, MultiValue)| {
            let name = group_name("g:send", name)?;
            let (kind, payload) = encode_message(&args, MessageKind::Send, None, meta)
                .map_err(|e| runtime_error(format!("g:send: {e}")))?;
            let from = with_state(lua, |state| state.self_id)?;
            let mut reached = 0;
            for member in members(&name) {
                let Member::Local(id) = member;
                let Some(service) = rt.service(id) else {
                    forget(id);
                    continue;
                };
                let message = Message::new(from, 0, kind.code(), payload.clone());
                match rt.post_message(&service, message) {
                    Ok(()) => reached += 1,
                    Err((PostError::Dead, _)) => forget(id),
                    Err((PostError::Overloaded, _)) => {}
                }
            }
            Ok(reached)
        })?,
    )?;

    // (token, nil) to wait on, or (nil, error).
    let rt = runtime.clone();
    core.set(
        "group_call",
        lua.create_function(
            move |lua,
                  (name, args): (String, MultiValue)|
                  -> mlua::Result<(Option<CallToken>, Option<String>)> {
                let name = group_name("g:call", name)?;
                let (kind, payload) = encode_message(&args, MessageKind::Call, None, meta)
                    .map_err(|e| runtime_error(format!("g:call: {e}")))?;
                let (from, token) =
                    with_state(lua, |state| (state.self_id, state.next_call_token()))?;
                let mut message = Message::new(from, token.to_raw(), kind.code(), payload);
                for _ in 0..CALL_DRAWS {
                    let Some((a, b)) = two_choices(&name) else {
                        break;
                    };
                    let Some(service) = less_loaded(&rt, a, b) else {
                        continue;
                    };
                    match rt.post_message(&service, message) {
                        Ok(()) => return Ok((Some(token), None)),
                        Err((PostError::Dead, back)) => {
                            forget(service.id());
                            message = back;
                        }
                        Err((PostError::Overloaded, _)) => {
                            return Ok((
                                None,
                                Some(format!(
                                    "g:call: service :{} of group '{name}' is overloaded",
                                    service.id()
                                )),
                            ))
                        }
                    }
                }
                Ok((None, Some(format!("g:call: group '{name}' has no members"))))
            },
        )?,
    )?;

    let rt = runtime.clone();
    core.set(
        "group_attach",
        lua.create_function(
            move |lua, (name, event, function): (String, Value, Function)| {
                let name = group_name("g:attach", name)?;
                let Value::String(event) = event else {
                    return Err(runtime_error(format!(
                        "g:attach: the event must be a string like 'module.name', got {}",
                        event.type_name()
                    )));
                };
                let event = event.to_str()?.to_string();
                let attacher = with_state(lua, |state| state.self_id)?;
                let id = note_attachment(lua, &rt, function, true, 0)?;
                watch(&name, attacher, id, &event);
                Ok(true)
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_join_leave_and_are_forgotten_with_their_watches() {
        let group = "groups-test-a";
        let (a, b, watcher) = (u64::MAX - 1, u64::MAX - 2, u64::MAX - 3);
        assert!(join(group, a));
        assert!(!join(group, a));
        assert!(join(group, b));
        assert_eq!(members(group), vec![Member::Local(a), Member::Local(b)]);
        watch(group, watcher, 7, "m.near");
        assert_eq!(watchers(a, "m.near"), vec![(watcher, 7)]);
        assert_eq!(watchers(a, "m.far"), vec![]);
        assert_eq!(
            watchers(watcher, "m.near"),
            vec![],
            "a watcher is no member"
        );
        assert!(leave(group, a));
        assert!(!leave(group, a));
        assert_eq!(watchers(a, "m.near"), vec![]);
        let (x, y) = two_choices(group).unwrap();
        assert_eq!((x, y), (Member::Local(b), Member::Local(b)));
        forget(watcher);
        assert_eq!(watchers(b, "m.near"), vec![]);
        forget(b);
        assert_eq!(members(group), vec![]);
        assert!(two_choices(group).is_none());
    }

    #[test]
    fn two_choices_are_two_different_members() {
        let group = "groups-test-b";
        for member in 1..=5u64 {
            join(group, u64::MAX - 100 - member);
        }
        for _ in 0..100 {
            let (x, y) = two_choices(group).unwrap();
            assert_ne!(x, y);
        }
        for member in 1..=5u64 {
            forget(u64::MAX - 100 - member);
        }
    }
}
