//! The message codec between services (`lua-api/src/codec.rs`): arbitrary
//! bytes decoded into a Lua VM, then encoded and decoded again.
//!
//! Invariants: decoding never panics and allocates in proportion to its
//! input; whatever decodes also encodes (the codec reads only what it
//! writes); the encoded form decodes to equal values (compared by their
//! canonical form, as table iteration order may differ), and encodes again
//! to as many bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_fuzz::canonical;

use lunet_lua::mlua::{Lua, MultiValue};
use lunet_lua::{decode_message, encode_message, SocketMeta};

thread_local! {
    /// One VM for every run: a fresh one per input would cost more than the
    /// decode. Its garbage is collected as usual.
    static LUA: Lua = Lua::new();
}

fn canonical_all(values: &MultiValue) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values.iter() {
        canonical(value, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    LUA.with(|lua| {
        let Ok(values) = decode_message(lua, data) else {
            return;
        };
        let mut encoded = Vec::new();
        if let Err(e) = encode_message(values.iter(), &mut encoded, SocketMeta::none()) {
            panic!("decoded values do not encode: {e}");
        }
        let again = match decode_message(lua, &encoded) {
            Ok(again) => again,
            Err(e) => panic!("an encoded message does not decode: {e}"),
        };
        assert_eq!(values.len(), again.len(), "value count after a round trip");
        assert!(
            canonical_all(&values) == canonical_all(&again),
            "values differ after a round trip"
        );
        let mut encoded_again = Vec::new();
        encode_message(again.iter(), &mut encoded_again, SocketMeta::none())
            .expect("encoding the round trip");
        assert_eq!(
            encoded.len(),
            encoded_again.len(),
            "encoded size after a round trip"
        );
    });
});
