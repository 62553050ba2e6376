//! Calls this node forwarded to the cluster (`lunet.call` of a remote
//! reference, `g:call`) and their answers, kept in Rust: an answer that
//! arrives is posted to its caller by the read path (`read.rs`) without
//! waking any Lua code of the cluster service.
//!
//! Protocol (node.lua):
//! 1. `forward(service, token, subject, node)` after `take_call()`: the
//!    reply subject to publish the call with (`PREFIX` + a number: the
//!    node's inbox subscription `_INBOX.NODE.INSTANCE.*` takes it).
//! 2. An answer on it: `r` + values or `e` + an error text answers the
//!    caller; NATS's 503 status is "no responders"; `a` + node (a group
//!    call taken by that node) records the node, which the read path hands
//!    to Lua to watch for (heartbeats: awaited).
//! 3. `fail_forwarded(node|nil, text)` fails the calls waiting on a node
//!    that went down (nil: all, the connection was lost);
//!    `fail_forwarded_one(reply, text)` one whose publish failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lunet_core::Runtime;
use mlua::Lua;

use crate::mail::{answer, error_payload};
use crate::protocol::MessageKind;
use crate::state::{with_state, Caller};

/// A forwarded call waiting for its answer.
struct Pending {
    caller: Caller,
    /// The node expected to answer (for a group call, once one took it).
    node: Option<String>,
    /// The subject it was published on, for error texts.
    subject: String,
}

/// The forwarded calls of the cluster service (one per process).
#[derive(Default)]
pub(super) struct Forwarded {
    /// `_INBOX.NODE.INSTANCE.f` (set by node.lua at start): a reply
    /// subject is this and a number.
    prefix: Vec<u8>,
    next: u64,
    calls: HashMap<u64, Pending>,
}

pub(super) type Shared = Arc<Mutex<Forwarded>>;

/// What the read path did with a message on the inbox.
pub(super) enum Handled {
    /// Not a forwarded call's answer: Lua handles it.
    NotOurs,
    /// Answered (or late: its caller was already failed).
    Done,
    /// A group call was taken by this node: Lua watches for it.
    TakenBy(String),
}

impl Forwarded {
    pub(super) fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.as_bytes().to_vec();
    }

    /// Step 1: the reply subject.
    pub(super) fn forward(
        &mut self,
        caller: Caller,
        subject: String,
        node: Option<String>,
    ) -> String {
        self.next += 1;
        self.calls.insert(
            self.next,
            Pending {
                caller,
                node,
                subject,
            },
        );
        format!("{}{}", String::from_utf8_lossy(&self.prefix), self.next)
    }

    /// Step 2. `status` is the HMSG status, if any. Returns the caller to
    /// answer and how, outside the lock.
    pub(super) fn on_message(
        &mut self,
        subject: &[u8],
        payload: &[u8],
        status: Option<u16>,
    ) -> (Handled, Option<(Caller, MessageKind, Vec<u8>)>) {
        let Some(id) = subject
            .strip_prefix(&self.prefix[..])
            .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
        else {
            return (Handled::NotOurs, None);
        };
        if status.is_none() && payload.first() == Some(&b'a') {
            let node = String::from_utf8_lossy(&payload[1..]).into_owned();
            return match self.calls.get_mut(&id) {
                Some(pending) => {
                    pending.node = Some(node.clone());
                    (Handled::TakenBy(node), None)
                }
                None => (Handled::Done, None),
            };
        }
        let Some(pending) = self.calls.remove(&id) else {
            return (Handled::Done, None); // late: its caller gave up
        };
        let (kind, answer) = match (status, payload.first()) {
            (Some(503), _) => (
                MessageKind::Error,
                error_payload(&format!(
                    "lunet.call: no responders: no node serves {}",
                    served(&pending.subject)
                )),
            ),
            (None, Some(b'r')) => (MessageKind::Response, payload[1..].to_vec()),
            (None, Some(b'e')) => (
                MessageKind::Error,
                error_payload(&String::from_utf8_lossy(&payload[1..])),
            ),
            _ => (
                MessageKind::Error,
                error_payload(&format!(
                    "lunet.call: a malformed answer from {}",
                    served(&pending.subject)
                )),
            ),
        };
        (Handled::Done, Some((pending.caller, kind, answer)))
    }

    /// Step 3: the callers to fail, taken out.
    pub(super) fn take_failed(&mut self, node: Option<&str>) -> Vec<Caller> {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, pending)| node.is_none() || pending.node.as_deref() == node)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.calls.remove(&id))
            .map(|pending| pending.caller)
            .collect()
    }

    /// Step 3, one call by its reply subject.
    pub(super) fn take_one(&mut self, reply: &str) -> Option<Caller> {
        let id = reply
            .as_bytes()
            .strip_prefix(&self.prefix[..])
            .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())?;
        self.calls.remove(&id).map(|pending| pending.caller)
    }
}

/// Answers `caller` once: the cluster service took the call over with
/// `take_call` (its `delayed` set), so only an answer still owed is sent.
pub(super) fn answer_once(
    lua: &Lua,
    runtime: &Runtime,
    caller: Caller,
    kind: MessageKind,
    payload: Vec<u8>,
) -> mlua::Result<bool> {
    let (from, owed) = with_state(lua, |state| (state.self_id, state.delayed.remove(&caller)))?;
    Ok(owed && answer(runtime, from, caller, kind, payload))
}

/// Locks `forwarded` (a poisoned lock still holds consistent data: every
/// change to it is one insert or remove).
pub(super) fn lock(forwarded: &Shared) -> std::sync::MutexGuard<'_, Forwarded> {
    forwarded.lock().unwrap_or_else(|e| e.into_inner())
}

/// "'name'" or "group 'name'" for the subject of a call.
fn served(subject: &str) -> String {
    let name = subject
        .strip_prefix("lunet.")
        .and_then(|rest| rest.rsplit_once('.'))
        .map(|(kind_name, _)| kind_name);
    match name.and_then(|kind_name| kind_name.split_once('.')) {
        Some(("g", group)) => format!("group '{group}'"),
        Some((_, name)) => format!("'{name}'"),
        None => format!("'{subject}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::served;

    #[test]
    fn a_subject_names_what_served_it() {
        assert_eq!(served("lunet.n.accounts.c"), "'accounts'");
        assert_eq!(served("lunet.g.user.info.c"), "group 'user.info'");
        assert_eq!(served("odd"), "'odd'");
    }
}
