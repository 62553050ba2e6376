//! The inbox: messages from other services (start, send, call, answers,
//! kill), the answers this VM owes, and its exit.

use std::sync::Arc;

use lunet_core::Service;
use mlua::{MultiValue, Value};

use super::connections::{close_conn, drop_conn};
use super::sessions::{ResumeWith, Sched, Session, Wait};
use super::{vm, LuaService};
use crate::codec::{self, CodecError, Receiving};
use crate::handoff;
use crate::ids::{CallToken, SessionId};
use crate::mail;
use crate::protocol::{self, MessageKind};
use crate::state::Caller;

impl LuaService {
    /// Sends an answer (or an error) to a caller.
    pub(super) fn answer(&self, caller: Caller, kind: MessageKind, payload: Vec<u8>) {
        mail::answer(&self.runtime, self.self_id, caller, kind, payload);
    }

    pub(super) fn start_main(&mut self, message: lunet_core::Message) {
        let Some(main) = self.main.take() else { return };
        let args = match codec::decode(&self.lua, &message.payload) {
            Ok(args) => args,
            Err(_) => MultiValue::new(),
        };
        if message.session != 0 {
            self.main_reply = Some(Caller::of(&message));
        }
        if let Some(sid) = self.new_session(&main, None) {
            self.main_session = Some(sid);
            self.sched.ready.push_back((sid, ResumeWith::Args(args)));
        }
    }

    /// The values of a send or a call (from byte `from` of its payload: a
    /// Sub message's id comes first), with the sockets it hands over
    /// attached to this VM first (`handoff.rs`, step 4). If the payload is
    /// corrupt, those sockets are closed.
    pub(super) fn decode_arguments(
        &mut self,
        service: &Arc<Service>,
        message: &mut lunet_core::Message,
        from: usize,
    ) -> Result<MultiValue, CodecError> {
        let payload = message.payload.get(from..).ok_or(CodecError::Corrupt)?;
        if message.attachments.is_empty() {
            return codec::decode(&self.lua, payload);
        }
        let attachments = std::mem::take(&mut message.attachments);
        let runtime = &self.runtime;
        let sockets = vm(|state| handoff::attach(state, runtime, service, attachments));
        let mut receiving = Receiving::new(self.socket_meta.clone(), sockets.clone());
        let decoded = codec::decode_receiving(&self.lua, &message.payload[from..], &mut receiving);
        if decoded.is_err() {
            let (sched, runtime) = (&mut self.sched, &self.runtime);
            vm(|state| {
                for cid in sockets.into_iter().flatten() {
                    close_conn(state, sched, runtime, service, cid);
                }
            });
        }
        decoded
    }

    /// Runs `function(args...)` in a new session; with `answering`, the
    /// session's end answers that caller (a call).
    pub(super) fn start_session(
        &mut self,
        function: &mlua::Function,
        args: MultiValue,
        answering: Option<Caller>,
    ) {
        if let Some(sid) = self.new_session(function, None) {
            self.ready_session(sid, args, answering);
        }
    }

    /// Session `sid` runs next with `args`; with `answering`, its end
    /// answers that caller.
    fn ready_session(&mut self, sid: SessionId, args: MultiValue, answering: Option<Caller>) {
        if let Some(caller) = answering {
            vm(|state| state.calls.insert(sid, caller));
            if let Some(session) = self.sched.sessions.get_mut(sid) {
                session.answering = true;
            }
        }
        self.sched.ready.push_back((sid, ResumeWith::Args(args)));
    }

    /// A message from another service.
    pub(super) fn on_message(&mut self, service: &Arc<Service>, mut message: lunet_core::Message) {
        let Some(kind) = MessageKind::from_byte(message.kind) else {
            return;
        };
        match kind {
            MessageKind::Start => self.start_main(message),
            MessageKind::Continue => {}
            MessageKind::Send | MessageKind::Call => {
                let answering = (kind == MessageKind::Call).then(|| Caller::of(&message));
                if !self.dispatching && !vm(|state| state.dispatch) {
                    match answering {
                        Some(caller) => {
                            let text = format!(
                                "service :{} ({}) has no lunet.dispatch function",
                                service.id(),
                                self.name
                            );
                            self.answer(caller, MessageKind::Error, mail::error_payload(&text));
                        }
                        None => tracing::warn!(
                            service = %self.name,
                            handle = service.id(),
                            "a message from :{} was dropped: no lunet.dispatch function",
                            message.source
                        ),
                    }
                    return;
                }
                let mut args = match self.decode_arguments(service, &mut message, 0) {
                    Ok(args) => args,
                    Err(e) => {
                        if let Some(caller) = answering {
                            self.answer(
                                caller,
                                MessageKind::Error,
                                mail::error_payload(&e.to_string()),
                            );
                        }
                        return;
                    }
                };
                args.push_front(Value::Integer(message.source as i64));
                if let Some(sid) = self.new_dispatch_session() {
                    self.ready_session(sid, args, answering);
                }
            }
            MessageKind::RunSub => self.on_sub(service, message, false),
            MessageKind::CallSub => self.on_sub(service, message, true),
            MessageKind::Fired => self.on_fired(message),
            MessageKind::Attach => self.on_attach(service, message),
            MessageKind::ReloadModule => self.on_reload_module(message),
            MessageKind::Response | MessageKind::Error => {
                let token = CallToken::from_raw(message.session);
                let Some(sid) = self.sched.sessions.id_at(token.session_index()) else {
                    return;
                };
                let waiting = matches!(self.sched.sessions.get(sid), Some(Session { wait: Wait::Call(t), .. }) if *t == token);
                if !waiting {
                    return;
                }
                let mut values = match codec::decode(&self.lua, &message.payload) {
                    Ok(values) => values,
                    Err(e) => {
                        let mut values = MultiValue::new();
                        values.push_back(
                            self.lua
                                .create_string(e.to_string())
                                .map_or(Value::Nil, Value::String),
                        );
                        values
                    }
                };
                values.push_front(Value::Boolean(kind == MessageKind::Response));
                let sched = &mut self.sched;
                vm(|state| sched.wake(state, sid, ResumeWith::Args(values)));
            }
            MessageKind::Kill => self.exiting = true,
            MessageKind::Collect => {
                let before = self.lua.used_memory();
                // A finalizer that fails is the script's own error.
                let _ = self.lua.gc_collect();
                let after = self.lua.used_memory();
                self.answer(
                    Caller::of(&message),
                    MessageKind::Collected,
                    protocol::collected_payload(before, after),
                );
            }
            MessageKind::Collected => {}
        }
    }

    /// The service ends: callers waiting on it get errors, its sockets close.
    pub(super) fn exit(&mut self, service: &Arc<Service>) {
        if self.exited {
            return;
        }
        self.exited = true;
        // Refused from now on: a peer that saw one of its sockets close
        // must not reach it any more (what is already queued is bounced).
        service.close_mailbox();
        // Model step 5: out of its groups, its modules forgotten.
        crate::model::groups::forget(service.id());
        crate::model::modules::forget(service.id());
        let mut owed: Vec<Caller> = vm(|state| {
            let mut owed: Vec<Caller> = state.calls.drain().map(|(_, caller)| caller).collect();
            owed.extend(state.delayed.drain());
            for cid in state.conns.ids() {
                drop_conn(state, cid);
            }
            owed
        });
        owed.extend(self.main_reply.take());
        let message = format!(
            "service :{} ({}) exited before answering",
            service.id(),
            self.name
        );
        self.answer_early(&message);
        for caller in owed {
            self.answer(caller, MessageKind::Error, mail::error_payload(&message));
        }
        self.sched = Sched::default();
        self.threads.clear();
    }
}
