//! Mail between Lua services: answers to calls and the payload of an error
//! answer. Used by the `lunet` module (`lunet.response`) and by the
//! scheduler (a session that ends answers its call, an exiting service
//! answers what it owes).

use lunet_core::{Message, Runtime};

use crate::codec;
use crate::protocol::MessageKind;
use crate::state::Caller;

/// Sends an answer (or an error) from service `from` to a caller.
pub fn answer(
    runtime: &Runtime,
    from: u64,
    caller: Caller,
    kind: MessageKind,
    payload: Vec<u8>,
) -> bool {
    match runtime.service(caller.service) {
        Some(service) => runtime.post(
            &service,
            lunet_core::Event::Message(Message::new(
                from,
                caller.token.to_raw(),
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
