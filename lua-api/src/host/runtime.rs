//! The scheduler's side of the runtime model (`model/`): a Sub message runs
//! as a session once its id is checked, an event delivery runs the
//! attached function, an attachment from outside is recorded, a module is
//! reloaded. Each is a message of the one path (model step 4).

use std::sync::Arc;

use lunet_core::{Message, Service};
use mlua::{Function, Value};

use super::{vm, LuaService};
use crate::codec;
use crate::mail;
use crate::model::events::{parse_attach, EventError};
use crate::protocol::MessageKind;
use crate::state::Caller;

/// Sub and attach messages a runtime keeps while its modules load.
const EARLY_MAX: usize = 10_000;

impl LuaService {
    /// The function in slot `slot` of the model's table (none before the
    /// model is loaded).
    fn model_function(&self, slot: u32) -> Option<Function> {
        let value = match &self.model {
            Some(model) => model.functions.raw_get::<Value>(slot),
            None => crate::model::functions(&self.lua)
                .ok()?
                .raw_get::<Value>(slot),
        };
        match value {
            Ok(Value::Function(function)) => Some(function),
            _ => None,
        }
    }

    /// Whether `message` waits for the runtime's modules (model step 1).
    /// They are out of the mailbox, so its cap no longer bounds them:
    /// past `EARLY_MAX` they are refused.
    /// Once ready, a message that arrives while kept ones wait for the end
    /// of the turn (`handle_early`) queues behind them: order holds.
    fn too_early(&mut self, service: &Arc<Service>, message: Message) -> Option<Message> {
        if self.model.is_none() {
            return Some(message);
        }
        if vm(|state| state.model.ready) {
            if self.early.is_empty() {
                return Some(message);
            }
            self.early.push(message);
            return None;
        }
        if self.early.len() < EARLY_MAX {
            self.early.push(message);
            return None;
        }
        let caller = MessageKind::from_byte(message.kind)
            .is_some_and(MessageKind::expects_answer)
            .then(|| Caller::of(&message));
        let text = format!(
            "service :{} ({}) is still loading its modules and keeps no more than {EARLY_MAX} messages until then",
            service.id(),
            self.name
        );
        self.refuse(service, &message, caller, text);
        None
    }

    /// The Sub and attach messages that came early, once the runtime is
    /// ready, in arrival order (called at the end of a turn).
    pub(super) fn handle_early(&mut self, service: &Arc<Service>) {
        if !vm(|state| state.model.ready) {
            return;
        }
        for message in std::mem::take(&mut self.early) {
            match MessageKind::from_byte(message.kind) {
                Some(MessageKind::RunSub) => self.on_sub(service, message, false),
                Some(MessageKind::CallSub) => self.on_sub(service, message, true),
                Some(MessageKind::Attach) => self.on_attach(service, message),
                _ => {}
            }
        }
        self.drain_ready(service);
    }

    /// The runtime exits before it was ready: the early callers get errors.
    pub(super) fn answer_early(&mut self, text: &str) {
        for message in std::mem::take(&mut self.early) {
            let expects =
                MessageKind::from_byte(message.kind).is_some_and(MessageKind::expects_answer);
            if expects {
                self.answer(
                    Caller::of(&message),
                    MessageKind::Error,
                    mail::error_payload(text),
                );
            }
        }
    }

    /// `RunSub` and `CallSub`: the id is checked before anything is
    /// decoded; an unknown module, a wrong version or an unknown Sub costs
    /// a log line, and a caller gets the reason.
    pub(super) fn on_sub(&mut self, service: &Arc<Service>, message: Message, call: bool) {
        let Some(mut message) = self.too_early(service, message) else {
            return;
        };
        let caller = call.then(|| Caller::of(&message));
        let checked = codec::sub_header(&message.payload).map(|(len, parts)| {
            let key = &message.payload[..len];
            let slot = vm(|state| {
                state
                    .model
                    .find_sub(key)
                    .ok_or_else(|| state.model.refusal(parts))
            });
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            let sub = format!("{}@{}:{}", text(parts[0]), text(parts[1]), text(parts[2]));
            (len, slot, sub)
        });
        let (len, slot, sub) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                self.refuse(service, &message, caller, format!("a Sub message: {e}"));
                return;
            }
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(why) => {
                let text = format!("Sub {sub}: service :{} ({}) {why}", service.id(), self.name);
                self.refuse(service, &message, caller, text);
                return;
            }
        };
        let (Some(function), Some(model)) = (self.model_function(slot), &self.model) else {
            let text = format!("Sub {sub}: its function is gone (reloaded meanwhile?)");
            self.refuse(service, &message, caller, text);
            return;
        };
        let run_sub = model.run_sub.clone();
        let mut args = match self.decode_arguments(service, &mut message, len) {
            Ok(args) => args,
            Err(e) => {
                self.refuse(service, &message, caller, format!("Sub {sub}: {e}"));
                return;
            }
        };
        args.push_front(Value::Integer(message.source as i64));
        args.push_front(Value::Function(function));
        self.start_session(&run_sub, args, caller);
    }

    /// A Sub (or attach) message that will not run: a log line here, the
    /// reason to a caller.
    fn refuse(
        &mut self,
        service: &Arc<Service>,
        message: &Message,
        caller: Option<Caller>,
        text: String,
    ) {
        tracing::warn!(
            service = %self.name,
            handle = service.id(),
            "refused a Sub from :{}: {text}",
            message.source
        );
        if let Some(caller) = caller {
            self.answer(caller, MessageKind::Error, mail::error_payload(&text));
        }
    }

    /// `Fired`: an event this VM attached to; the function runs with the
    /// firing runtime's handle first. An attachment forgotten meanwhile
    /// drops it.
    pub(super) fn on_fired(&mut self, message: Message) {
        let Some(slot) = vm(|state| state.model.events.slot_of(message.session)) else {
            return;
        };
        let Some(function) = self.model_function(slot) else {
            return;
        };
        let mut args = match codec::decode(&self.lua, &message.payload) {
            Ok(args) => args,
            Err(e) => {
                tracing::warn!(service = %self.name, "an event from :{} was dropped: {e}", message.source);
                return;
            }
        };
        args.push_front(Value::Integer(message.source as i64));
        self.start_session(&function, args, None);
    }

    /// `Attach`: another runtime attaches to an event defined here (model
    /// `events.rs`, step 2). Answered at once, without Lua.
    pub(super) fn on_attach(&mut self, service: &Arc<Service>, message: Message) {
        let Some(message) = self.too_early(service, message) else {
            return;
        };
        let caller = Caller::of(&message);
        let outcome = match parse_attach(&message.payload) {
            Some((id, event)) => {
                let source = message.source;
                vm(|state| state.model.events.attach_remote(event, source, id))
            }
            None => {
                let text = "lunet.attach: corrupt message".to_string();
                self.answer(caller, MessageKind::Error, mail::error_payload(&text));
                return;
            }
        };
        match outcome {
            Ok(()) => {
                let mut payload = Vec::new();
                let _ = codec::encode([Value::Boolean(true)].iter(), &mut payload, self.socket_key);
                self.answer(caller, MessageKind::Response, payload);
            }
            Err(EventError::Undefined { event, defines, .. }) => {
                let text = format!(
                    "lunet.attach: service :{} ({}) does not define the event '{event}' ({defines})",
                    service.id(),
                    self.name
                );
                self.answer(caller, MessageKind::Error, mail::error_payload(&text));
            }
            Err(e) => {
                self.answer(
                    caller,
                    MessageKind::Error,
                    mail::error_payload(&e.to_string()),
                );
            }
        }
    }

    /// `ReloadModule`: runs `model.lua`'s `reload_module` as a session that
    /// answers the console.
    pub(super) fn on_reload_module(&mut self, message: Message) {
        let caller = Caller::of(&message);
        let Some(model) = &self.model else {
            let text = format!("service ({}) runs no modules", self.name);
            self.answer(caller, MessageKind::Error, mail::error_payload(&text));
            return;
        };
        let reload = model.reload_module.clone();
        let name = String::from_utf8_lossy(&message.payload).into_owned();
        let name = match self.lua.create_string(name) {
            Ok(name) => Value::String(name),
            Err(e) => {
                self.answer(
                    caller,
                    MessageKind::Error,
                    mail::error_payload(&e.to_string()),
                );
                return;
            }
        };
        self.start_session(&reload, std::iter::once(name).collect(), Some(caller));
    }
}
