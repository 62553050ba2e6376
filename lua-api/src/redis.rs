//! The Redis bindings: the fast path of `sock:readresp`, RESP commands and
//! replies as Lua values (`sock:readreply`), and the `lunet.redis` client
//! (`redis.lua`).
//!
//! `core.readresp(conn [, max_bulk])` is a C function on the raw Lua
//! stack, because it runs once per command of a RESP server and mlua's
//! value handles cost more than the parse (kv.lua with `redis-benchmark
//! -P 16` spent most of its time in them). It keeps `core.read`'s protocol:
//! the command as a table of strings, `false` (must wait: the request is
//! parked, the wrapper yields), or `nil, err`.
//!
//! It keeps the contract of `raw.rs`: the buffers live in a scratch taken
//! out of a thread-local cell for the call (a finalizer that reads during
//! an allocation finds the cell empty and uses a fresh scratch) and put
//! back after it; a memory error leaks that scratch once.

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lunet_core::proto::resp::{self, Progress};
use mlua::{ffi, Lua, Table, Value};

use crate::caps::{self, Capability};
use crate::ids::ConnectionId;
use crate::protocol::ReadKind;
use crate::raw::{self, raise};
use crate::read::{self, FastRead, ReadAnswer, Shape, Taken};
use crate::state::with_state_of;

/// Buffers of one `readresp` call.
#[derive(Default)]
struct Scratch {
    /// The command's bytes, or the text of an error.
    bytes: Vec<u8>,
    words: Vec<resp::Arg>,
}

thread_local! {
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// What the Rust half of a call found; the text of `Failed` and `Misuse`
/// is in the scratch's bytes.
enum Step {
    Command,
    Wait,
    Failed,
    Misuse,
}

/// Puts the functions of the Redis bindings on `core`: `core.readresp`
/// and what `redis.lua` (the `lunet.redis` table, a part of the prelude,
/// `parts.rs`) uses.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let readresp = raw::closure(lua, readresp)?;
    core.raw_set("readresp", readresp)?;
    core.raw_set(
        "redis_connect_allowed",
        lua.create_function(|lua, ()| caps::require(lua, Capability::Net, "lunet.redis.connect"))?,
    )?;
    core.raw_set("null", Value::NULL)?;
    Ok(())
}

/// The words of the command in `bytes` (whole, parsed before) into
/// `words`.
pub(crate) fn command_words(bytes: &[u8], words: &mut Vec<resp::Arg>) {
    let _ = resp::parse_command(bytes, &COMMAND_LIMITS, words);
}

/// The command in `bytes` (whole, parsed before) as a table of strings.
pub(crate) fn command_table(lua: &Lua, bytes: &[u8]) -> mlua::Result<Value> {
    read::with_words(|words| {
        command_words(bytes, words);
        let table = lua.create_table_with_capacity(words.len(), 0)?;
        for (index, word) in words.iter().enumerate() {
            table.raw_set(index + 1, lua.create_string(word.bytes(bytes))?)?;
        }
        Ok(Value::Table(table))
    })
}

/// The limits of parsing a command again: it was checked when it was read.
const COMMAND_LIMITS: resp::Limits = resp::Limits {
    max_bulk: usize::MAX,
    max_elements: usize::MAX,
    max_inline: usize::MAX,
    max_command: usize::MAX,
    max_depth: usize::MAX,
};

/// A reply as a Lua value: strings, integers, tables for arrays,
/// [`Value::NULL`] for a null bulk or array, `{false, text}` for an error
/// inside an array (as lua-resty-redis).
fn reply_value(lua: &Lua, reply: &resp::Reply) -> mlua::Result<Value> {
    Ok(match reply {
        resp::Reply::Simple(text) => Value::String(lua.create_string(text)?),
        resp::Reply::Bulk(Some(bytes)) => Value::String(lua.create_string(bytes)?),
        resp::Reply::Integer(n) => Value::Integer(*n),
        resp::Reply::Bulk(None) | resp::Reply::Array(None) => Value::NULL,
        resp::Reply::Error(text) => {
            let pair = lua.create_table_with_capacity(2, 0)?;
            pair.raw_set(1, false)?;
            pair.raw_set(2, lua.create_string(text)?)?;
            Value::Table(pair)
        }
        resp::Reply::Array(Some(items)) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (index, item) in items.iter().enumerate() {
                table.raw_set(index + 1, reply_value(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

/// What `sock:readreply` returns for the whole reply in `bytes`: the
/// value, or `nil, text, true` for an error reply.
pub(crate) fn reply_answer(lua: &Lua, bytes: &[u8]) -> mlua::Result<ReadAnswer> {
    Ok(match resp::parse_reply(bytes, &resp::Limits::default()) {
        Ok(Progress::Done(resp::Reply::Error(text), _)) => (
            Value::Nil,
            Some(String::from_utf8_lossy(text).into_owned().into()),
            Value::Boolean(true),
        ),
        Ok(Progress::Done(reply, _)) => (reply_value(lua, &reply)?, None, Value::Nil),
        // The bytes held a whole reply when they were taken.
        _ => (Value::Nil, Some("lunet: reply lost".into()), Value::Nil),
    })
}

/// `core.readresp(conn [, max_bulk])`.
unsafe extern "C-unwind" fn readresp(state: *mut ffi::lua_State) -> c_int {
    let vm = raw::identity(state);
    let mut is_number = 0;
    let id = ffi::lua_tointegerx(state, 1, &mut is_number);
    if is_number == 0 {
        return raise(state, c"sock:readresp: not a socket".as_ptr());
    }
    let max_bulk = match ffi::lua_type(state, 2) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => None,
        _ => {
            let max = ffi::lua_tointegerx(state, 2, &mut is_number);
            if is_number == 0 {
                return raise(
                    state,
                    c"sock:readresp: max_bulk must be an integer".as_ptr(),
                );
            }
            Some(max)
        }
    };
    let scratch = Box::into_raw(SCRATCH.take().unwrap_or_default());
    let step = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the scratch was taken out of the cell for this call.
        fetch(vm, id, max_bulk, &mut *scratch)
    }))
    .unwrap_or_else(|_| {
        (*scratch).bytes.clear();
        (*scratch)
            .bytes
            .extend_from_slice(b"lunet: sock:readresp failed");
        Step::Misuse
    });
    // From here on the Lua API may raise: only `scratch` (a raw pointer)
    // and plain values are live.
    let results = match step {
        Step::Command => {
            let Scratch { bytes, words } = &*scratch;
            ffi::lua_createtable(state, words.len() as c_int, 0);
            for (index, word) in words.iter().enumerate() {
                let word = word.bytes(bytes);
                ffi::lua_pushlstring(state, word.as_ptr().cast(), word.len());
                ffi::lua_rawseti(state, -2, index as ffi::lua_Integer + 1);
            }
            1
        }
        Step::Wait => {
            ffi::lua_pushboolean(state, 0);
            1
        }
        Step::Failed | Step::Misuse => {
            if let Step::Failed = step {
                ffi::lua_pushnil(state);
            }
            let text = &(*scratch).bytes;
            ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
            if let Step::Failed = step {
                2
            } else {
                -1
            }
        }
    };
    give_back(scratch);
    if results < 0 {
        ffi::lua_error(state);
    }
    results
}

/// Puts the scratch back in the cell (kept only while it is small).
unsafe fn give_back(scratch: *mut Scratch) {
    // SAFETY: `scratch` came from Box::into_raw in this call.
    let scratch = Box::from_raw(scratch);
    if scratch.bytes.capacity() <= read::KEEP_BYTES {
        SCRATCH.set(Some(scratch));
    }
}

/// The Rust half: the read, and the command's words or the error's text
/// in the scratch. Runs no Lua.
fn fetch(vm: usize, id: i64, max_bulk: Option<i64>, scratch: &mut Scratch) -> Step {
    let id = ConnectionId::from_lua_integer(id);
    let kind = ReadKind::Command.code() as i64;
    let found = with_state_of(vm, |state| {
        read::fast_read(state, id, kind, max_bulk, None, &mut scratch.bytes)
    });
    let (step, text) = match found {
        Ok(Ok(FastRead::Taken(Taken::Parsed(Shape::Command)))) => {
            command_words(&scratch.bytes, &mut scratch.words);
            return Step::Command;
        }
        Ok(Ok(FastRead::Wait)) => return Step::Wait,
        Ok(Ok(FastRead::Taken(Taken::Failed { err, .. }))) => (Step::Failed, err.into_owned()),
        Ok(Ok(FastRead::Closed)) => (Step::Failed, "closed".to_string()),
        Ok(Ok(FastRead::Taken(_))) => (Step::Misuse, "lunet: readresp read something else".into()),
        Ok(Err(misuse)) => (Step::Misuse, misuse.to_string()),
        Err(unavailable) => (Step::Misuse, unavailable.to_string()),
    };
    scratch.bytes.clear();
    scratch.bytes.extend_from_slice(text.as_bytes());
    step
}
