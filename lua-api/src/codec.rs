//! The codec for values between services (each service is its own VM, so a
//! message is bytes). Supports nil, booleans, integers, floats, strings and
//! nested tables; a cycle, a function, userdata, a coroutine or nesting
//! deeper than [`MAX_DEPTH`] is an error at the sender. Decoding checks
//! every length, so a corrupt payload is an error, never a panic.
//!
//! Sockets are handed over (`handoff.rs`): among the arguments of a send or
//! a call, a socket object is encoded as a reference to an attachment of
//! the message ([`Handing`] collects them; the same socket twice is one
//! attachment), and decoded as a socket object of the receiver
//! ([`Receiving`] makes one object per attachment). Anywhere else (answers,
//! spawn arguments) a socket is an error.
//!
//! Sub references (`model/subs.rs`) travel as their id, (module, version,
//! name), anywhere a value may: arguments, answers, spawn arguments, state.
//! The receiver of a Sub message checks the id before it decodes anything
//! else (`model/`).
//!
//! Layout: a count of values (u32 LE), then each value as a tag byte and
//! its payload. A table is its array part (1..n) then its other pairs; a
//! socket is the index of its attachment (u32 LE); a Sub is three strings
//! (u32 LE length, bytes): module, version, name; a remote reference of
//! the cluster two: name, node.

use std::ffi::c_void;

use mlua::{Lua, MultiValue, Table, Value};

use crate::cluster::Remote;
use crate::ids::ConnectionId;
use crate::model::subs::{SubId, SubRef};

pub const MAX_DEPTH: usize = 32;

const NIL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STR: u8 = 5;
const TABLE: u8 = 6;
const SOCKET: u8 = 7;
/// A Sub reference; public for the key of `SubId`.
pub const SUB: u8 = 8;
/// A remote reference of the cluster (`cluster::Remote`): name, node.
const REMOTE: u8 = 9;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot send a {0} to another service")]
    Type(&'static str),
    #[error("cannot send a table that contains itself (a cycle)")]
    Cycle,
    #[error("cannot send tables nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a socket can be handed over only among the arguments of lunet.send or lunet.call")]
    Socket,
    #[error("corrupt message")]
    Corrupt,
    /// The system refused the memory to copy a value (the process is at its
    /// limit): an error for the sender, not an abort.
    #[error("not enough memory")]
    NoMemory,
    #[error("{0}")]
    Lua(#[from] mlua::Error),
}

/// What identifies a socket object: the address of its metatable
/// (`core.Socket`, alive as long as the VM), only ever compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketMeta(usize);

impl SocketMeta {
    pub fn of(metatable: &Table) -> SocketMeta {
        SocketMeta(metatable.to_pointer() as usize)
    }

    /// For a VM without sockets (unit tests, the fuzz targets): every
    /// table is a plain table.
    pub fn none() -> SocketMeta {
        SocketMeta(0)
    }
}

/// The sockets met while encoding a send or a call: each becomes an
/// attachment of the message, referred to by its index here.
pub struct Handing {
    meta: SocketMeta,
    pub sockets: Vec<ConnectionId>,
}

impl Handing {
    pub fn new(meta: SocketMeta) -> Handing {
        Handing {
            meta,
            sockets: Vec::new(),
        }
    }
}

/// How the encoder treats socket objects.
struct Encoder<'a> {
    path: Vec<*const c_void>,
    /// `None`: not a send or a call, a socket is an error.
    handing: Option<&'a mut Handing>,
    /// The socket metatable, to tell socket objects from plain tables.
    meta: SocketMeta,
}

/// What a message's payload is made with: room for a few small values,
/// so that encoding the usual message does not grow the vector step by
/// step (each growth a `realloc`; measured on the call ping-pong).
pub fn payload() -> Vec<u8> {
    Vec::with_capacity(64)
}

/// Encodes `values` (appending to `out`). `meta` tells socket objects
/// apart, which are refused here.
pub fn encode<'a>(
    values: impl ExactSizeIterator<Item = &'a Value>,
    out: &mut Vec<u8>,
    meta: SocketMeta,
) -> Result<(), CodecError> {
    encode_with(values, out, None, meta)
}

/// Encodes the arguments of a send or a call: socket objects among them
/// are collected in `handing`.
pub fn encode_handing<'a>(
    values: impl ExactSizeIterator<Item = &'a Value>,
    out: &mut Vec<u8>,
    handing: &mut Handing,
) -> Result<(), CodecError> {
    let meta = handing.meta;
    encode_with(values, out, Some(handing), meta)
}

fn encode_with<'a>(
    values: impl ExactSizeIterator<Item = &'a Value>,
    out: &mut Vec<u8>,
    handing: Option<&mut Handing>,
    meta: SocketMeta,
) -> Result<(), CodecError> {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    let mut encoder = Encoder {
        path: Vec::new(),
        handing,
        meta,
    };
    for value in values {
        encoder.value(value, out)?;
    }
    Ok(())
}

impl Encoder<'_> {
    fn value(&mut self, value: &Value, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match value {
            Value::Nil => put_nil(out),
            Value::Boolean(b) => put_boolean(out, *b),
            Value::Integer(i) => put_integer(out, *i),
            Value::Number(f) => put_number(out, *f),
            Value::String(s) => {
                let bytes = s.as_bytes();
                out.try_reserve(bytes.len() + 5)
                    .map_err(|_| CodecError::NoMemory)?;
                put_string(out, &bytes);
            }
            Value::Table(table) => {
                if self.is_socket(table) {
                    return self.socket(table, out);
                }
                self.table(table, out)?
            }
            Value::Function(_) => return Err(CodecError::Type("function")),
            Value::Thread(_) => return Err(CodecError::Type("coroutine")),
            Value::UserData(data) => {
                if let Ok(sub) = data.borrow::<SubRef>() {
                    out.extend_from_slice(sub.0.key());
                } else if let Ok(remote) = data.borrow::<Remote>() {
                    out.push(REMOTE);
                    for part in [&remote.name, &remote.node] {
                        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                        out.extend_from_slice(part.as_bytes());
                    }
                } else {
                    return Err(CodecError::Type("userdata"));
                }
            }
            Value::LightUserData(_) => return Err(CodecError::Type("userdata")),
            Value::Error(_) => return Err(CodecError::Type("error object")),
            _ => return Err(CodecError::Type("value of this type")),
        }
        Ok(())
    }

    fn is_socket(&self, table: &Table) -> bool {
        table
            .metatable()
            .is_some_and(|metatable| SocketMeta::of(&metatable) == self.meta)
    }

    fn socket(&mut self, table: &Table, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let Some(handing) = self.handing.as_deref_mut() else {
            return Err(CodecError::Socket);
        };
        let id = ConnectionId::from_lua_integer(table.raw_get(1)?);
        let index = match handing.sockets.iter().position(|&known| known == id) {
            Some(index) => index,
            None => {
                handing.sockets.push(id);
                handing.sockets.len() - 1
            }
        };
        out.push(SOCKET);
        out.extend_from_slice(&(index as u32).to_le_bytes());
        Ok(())
    }

    fn table(&mut self, table: &Table, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let pointer = table.to_pointer();
        if self.path.contains(&pointer) {
            return Err(CodecError::Cycle);
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        self.path.push(pointer);
        out.push(TABLE);
        let array_len = table.raw_len();
        out.extend_from_slice(&(array_len as u32).to_le_bytes());
        let pairs_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        for i in 1..=array_len {
            let value: Value = table.raw_get(i)?;
            self.value(&value, out)?;
        }
        let mut pairs = 0u32;
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair?;
            if let Value::Integer(i) = key {
                if i >= 1 && (i as usize) <= array_len {
                    continue;
                }
            }
            self.value(&key, out)?;
            self.value(&value, out)?;
            pairs += 1;
        }
        out[pairs_at..pairs_at + 4].copy_from_slice(&pairs.to_le_bytes());
        self.path.pop();
        Ok(())
    }
}

// One plain value each, as `encode` writes it (also for `api/send.rs`,
// which encodes from the raw Lua stack; `out` has the room reserved).
pub fn put_nil(out: &mut Vec<u8>) {
    out.push(NIL);
}

pub fn put_boolean(out: &mut Vec<u8>, value: bool) {
    out.push(if value { TRUE } else { FALSE });
}

pub fn put_integer(out: &mut Vec<u8>, value: i64) {
    out.push(INT);
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_number(out: &mut Vec<u8>, value: f64) {
    out.push(FLOAT);
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(STR);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes one string as a whole payload (error answers).
pub fn encode_str(message: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(&1u32.to_le_bytes());
    put_string(out, message.as_bytes());
    Ok(())
}

/// Encodes an integer then strings, as [`encode`] would: messages made
/// without a Lua VM (the cluster's, `cluster/mod.rs`).
pub fn encode_integer_and_strings(first: i64, strings: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(&(strings.len() as u32 + 1).to_le_bytes());
    out.push(INT);
    out.extend_from_slice(&first.to_le_bytes());
    for string in strings {
        out.push(STR);
        out.extend_from_slice(&(string.len() as u32).to_le_bytes());
        out.extend_from_slice(string);
    }
}

/// The codec's bytes of a Sub id: the tag, then module, version and name.
pub fn sub_key(module: &str, version: &str, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(13 + module.len() + version.len() + name.len());
    key.push(SUB);
    for part in [module, version, name] {
        key.extend_from_slice(&(part.len() as u32).to_le_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The Sub id at the front of `bytes` (a Sub message's header): its key's
/// length and its three parts, checked as bytes only (no Lua value made).
pub fn sub_header(bytes: &[u8]) -> Result<(usize, [&[u8]; 3]), CodecError> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.u8()? != SUB {
        return Err(CodecError::Corrupt);
    }
    let parts = reader.sub_parts()?;
    Ok((reader.at, parts))
}

/// The one string of a payload made by [`encode_str`] (an error answer),
/// for readers without a Lua VM (the console).
pub fn decode_text(payload: &[u8]) -> Option<String> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    if reader.u32().ok()? != 1 || reader.u8().ok()? != STR {
        return None;
    }
    let len = reader.u32().ok()? as usize;
    Some(String::from_utf8_lossy(reader.take(len).ok()?).into_owned())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        let end = self.at.checked_add(n).ok_or(CodecError::Corrupt)?;
        let slice = self.bytes.get(self.at..end).ok_or(CodecError::Corrupt)?;
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| CodecError::Corrupt)?,
        ))
    }
    fn u64(&mut self) -> Result<[u8; 8], CodecError> {
        self.take(8)?.try_into().map_err(|_| CodecError::Corrupt)
    }
    /// Module, version and name of a Sub, after its tag.
    fn sub_parts(&mut self) -> Result<[&'a [u8]; 3], CodecError> {
        let start = self.at;
        let mut ends = [0usize; 3];
        for end in &mut ends {
            let len = self.u32()? as usize;
            self.take(len)?;
            *end = self.at;
        }
        let bytes = self.bytes;
        let part = |from: usize, to: usize| &bytes[from + 4..to];
        Ok([
            part(start, ends[0]),
            part(ends[0], ends[1]),
            part(ends[1], ends[2]),
        ])
    }
}

/// A Sub reference of `lua` from the parts of a received id; parts that are
/// not valid names make the payload corrupt.
fn sub_value(lua: &Lua, parts: [&[u8]; 3]) -> Result<Value, CodecError> {
    fn text(bytes: &[u8]) -> Result<&str, CodecError> {
        std::str::from_utf8(bytes).map_err(|_| CodecError::Corrupt)
    }
    let (module, version, name) = (text(parts[0])?, text(parts[1])?, text(parts[2])?);
    use crate::model::subs::{check_module_name, check_name, check_version};
    if check_module_name(module).is_err()
        || check_version(version).is_err()
        || check_name("Sub", name).is_err()
    {
        return Err(CodecError::Corrupt);
    }
    let sub = SubRef(std::sync::Arc::new(SubId::new(module, version, name)));
    Ok(Value::UserData(lua.create_userdata(sub)?))
}

/// The sockets a received message carries, attached to the receiver:
/// decoding makes one socket object per attachment.
pub struct Receiving {
    meta: Table,
    /// The receiver's id of each attachment (`None`: it could not be
    /// attached, and a reference to it is corrupt).
    sockets: Vec<Option<ConnectionId>>,
    objects: Vec<Option<Table>>,
}

impl Receiving {
    pub fn new(meta: Table, sockets: Vec<Option<ConnectionId>>) -> Receiving {
        let objects = vec![None; sockets.len()];
        Receiving {
            meta,
            sockets,
            objects,
        }
    }

    fn object(&mut self, lua: &Lua, index: usize) -> Result<Value, CodecError> {
        if let Some(Some(object)) = self.objects.get(index) {
            return Ok(Value::Table(object.clone()));
        }
        let id = self
            .sockets
            .get(index)
            .copied()
            .flatten()
            .ok_or(CodecError::Corrupt)?;
        // What `new_socket` in prelude.lua makes: `{id}` with the metatable
        // (its __gc closes the connection when the object is collected).
        let object = lua.create_table_with_capacity(1, 0)?;
        object.raw_set(1, id)?;
        object.set_metatable(Some(self.meta.clone()))?;
        self.objects[index] = Some(object.clone());
        Ok(Value::Table(object))
    }
}

/// Decodes a payload made by [`encode`] into Lua values of `lua`.
pub fn decode(lua: &Lua, bytes: &[u8]) -> Result<MultiValue, CodecError> {
    decode_with(lua, bytes, None)
}

/// Decodes the arguments of a send or a call, whose sockets are attached
/// to this VM already (`receiving`).
pub fn decode_receiving(
    lua: &Lua,
    bytes: &[u8],
    receiving: &mut Receiving,
) -> Result<MultiValue, CodecError> {
    decode_with(lua, bytes, Some(receiving))
}

fn decode_with(
    lua: &Lua,
    bytes: &[u8],
    mut receiving: Option<&mut Receiving>,
) -> Result<MultiValue, CodecError> {
    let mut reader = Reader { bytes, at: 0 };
    let count = reader.u32()? as usize;
    // Every value takes at least one byte: a bogus count cannot allocate much.
    if count > bytes.len() {
        return Err(CodecError::Corrupt);
    }
    // One more: a message's arguments get its source in front (inbox.rs),
    // which would grow a full deque (a realloc per message).
    let mut values = MultiValue::with_capacity(count + 1);
    for _ in 0..count {
        values.push_back(decode_value(lua, &mut reader, 0, &mut receiving)?);
    }
    Ok(values)
}

fn decode_value(
    lua: &Lua,
    reader: &mut Reader,
    depth: usize,
    receiving: &mut Option<&mut Receiving>,
) -> Result<Value, CodecError> {
    Ok(match reader.u8()? {
        NIL => Value::Nil,
        FALSE => Value::Boolean(false),
        TRUE => Value::Boolean(true),
        INT => Value::Integer(i64::from_le_bytes(reader.u64()?)),
        FLOAT => Value::Number(f64::from_le_bytes(reader.u64()?)),
        STR => {
            let len = reader.u32()? as usize;
            Value::String(lua.create_string(reader.take(len)?)?)
        }
        SUB => {
            let parts = reader.sub_parts()?;
            sub_value(lua, parts)?
        }
        REMOTE => {
            let mut text = || -> Result<String, CodecError> {
                let len = reader.u32()? as usize;
                String::from_utf8(reader.take(len)?.to_vec()).map_err(|_| CodecError::Corrupt)
            };
            let (name, node) = (text()?, text()?);
            if crate::cluster::check_name(&name).is_err()
                || crate::cluster::check_name(&node).is_err()
            {
                return Err(CodecError::Corrupt);
            }
            Value::UserData(lua.create_userdata(Remote { name, node })?)
        }
        SOCKET => {
            let index = reader.u32()? as usize;
            match receiving {
                Some(receiving) => receiving.object(lua, index)?,
                None => return Err(CodecError::Corrupt),
            }
        }
        TABLE => {
            if depth >= MAX_DEPTH {
                return Err(CodecError::Corrupt);
            }
            let array_len = reader.u32()? as usize;
            let pairs = reader.u32()? as usize;
            let left = reader.bytes.len() - reader.at;
            if array_len > left || pairs > left {
                return Err(CodecError::Corrupt);
            }
            let table = lua.create_table_with_capacity(array_len, pairs)?;
            for i in 1..=array_len {
                table.raw_set(i, decode_value(lua, reader, depth + 1, receiving)?)?;
            }
            for _ in 0..pairs {
                let key = decode_value(lua, reader, depth + 1, receiving)?;
                let value = decode_value(lua, reader, depth + 1, receiving)?;
                if key == Value::Nil {
                    return Err(CodecError::Corrupt);
                }
                if let Value::Number(f) = key {
                    if f.is_nan() {
                        return Err(CodecError::Corrupt);
                    }
                }
                table.raw_set(key, value)?;
            }
            Value::Table(table)
        }
        _ => return Err(CodecError::Corrupt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(lua: &Lua, source: &str) -> Result<MultiValue, CodecError> {
        let values: MultiValue = lua.load(source).eval()?;
        let mut bytes = Vec::new();
        encode(values.iter(), &mut bytes, SocketMeta::none())?;
        decode(lua, &bytes)
    }

    #[test]
    fn every_type_round_trips() {
        let lua = Lua::new();
        let values = round_trip(
            &lua,
            "return nil, true, false, 42, -7, 3.5, 'bytes\\0x', {1, 2, {a = 'b'}, [10] = 'ten', x = {y = {z = 1}}}",
        )
        .unwrap();
        let check: mlua::Function = lua
            .load(
                r#"return function(a, b, c, d, e, f, g, t)
                    assert(a == nil and b == true and c == false)
                    assert(d == 42 and math.type(d) == "integer" and e == -7)
                    assert(f == 3.5 and math.type(f) == "float")
                    assert(g == "bytes\0x")
                    assert(t[1] == 1 and t[2] == 2 and t[3].a == "b" and t[10] == "ten" and t.x.y.z == 1)
                    return true
                end"#,
            )
            .eval()
            .unwrap();
        assert!(check.call::<bool>(values).unwrap());
    }

    #[test]
    fn unsendable_values_are_errors() {
        let lua = Lua::new();
        assert!(matches!(
            round_trip(&lua, "return function() end"),
            Err(CodecError::Type("function"))
        ));
        assert!(matches!(
            round_trip(&lua, "local t = {} t.self = t return t"),
            Err(CodecError::Cycle)
        ));
        assert!(matches!(
            round_trip(&lua, "local t = {} for i = 1, 40 do t = {t} end return t"),
            Err(CodecError::TooDeep)
        ));
        assert!(matches!(
            round_trip(&lua, "return coroutine.create(print)"),
            Err(CodecError::Type("coroutine"))
        ));
    }

    #[test]
    fn sub_references_round_trip_and_their_header_parses() {
        let lua = Lua::new();
        let sub = SubRef(std::sync::Arc::new(SubId::new("a.b", "1.0", "login")));
        lua.globals().set("k", sub.clone()).unwrap();
        let values = round_trip(&lua, "return 1, {k = k}, k").unwrap();
        let check: mlua::Function = lua
            .load("return function(n, t, s) return n == 1 and t.k == k and s == k end")
            .eval()
            .unwrap();
        assert!(check.call::<bool>(values).unwrap());
        let mut bytes = sub.0.key().to_vec();
        bytes.extend_from_slice(b"rest");
        let (len, parts) = sub_header(&bytes).unwrap();
        assert_eq!(&bytes[len..], b"rest");
        assert_eq!(parts, [&b"a.b"[..], &b"1.0"[..], &b"login"[..]]);
        for cut in 0..sub.0.key().len() {
            assert!(sub_header(&bytes[..cut]).is_err());
        }
        // A name that is not one makes the payload corrupt.
        let mut forged = Vec::new();
        forged.extend_from_slice(&1u32.to_le_bytes());
        forged.extend_from_slice(&sub_key("../etc", "1", "x"));
        assert!(matches!(decode(&lua, &forged), Err(CodecError::Corrupt)));
    }

    #[test]
    fn error_text_reads_without_lua() {
        let mut payload = Vec::new();
        encode_str("boom", &mut payload).unwrap();
        assert_eq!(decode_text(&payload).as_deref(), Some("boom"));
        assert_eq!(decode_text(&payload[..payload.len() - 1]), None);
    }

    #[test]
    fn shared_subtables_are_not_cycles() {
        let lua = Lua::new();
        let values = round_trip(&lua, "local s = {1} return {s, s}").unwrap();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn remote_references_round_trip_and_bad_ones_are_corrupt() {
        let lua = Lua::new();
        let remote = Remote {
            name: "accounts".to_string(),
            node: "back1".to_string(),
        };
        let value = Value::UserData(lua.create_userdata(remote).unwrap());
        let mut out = Vec::new();
        encode([value].iter(), &mut out, SocketMeta::none()).unwrap();
        let back: Vec<Value> = decode(&lua, &out).unwrap().into_iter().collect();
        let Value::UserData(data) = &back[0] else {
            panic!("{back:?}")
        };
        let remote = data.borrow::<Remote>().unwrap();
        assert_eq!(
            (remote.name.as_str(), remote.node.as_str()),
            ("accounts", "back1")
        );
        // A name with a dot cannot be a cluster name.
        let mut bad = Vec::new();
        bad.extend_from_slice(&1u32.to_le_bytes());
        bad.push(REMOTE);
        for part in ["a.b", "n"] {
            bad.extend_from_slice(&(part.len() as u32).to_le_bytes());
            bad.extend_from_slice(part.as_bytes());
        }
        assert!(matches!(decode(&lua, &bad), Err(CodecError::Corrupt)));
    }

    #[test]
    fn integers_and_strings_encode_as_values_do() {
        let lua = Lua::new();
        let mut out = Vec::new();
        encode_integer_and_strings(-7, &[b"call", b""], &mut out);
        let values = decode(&lua, &out).unwrap();
        let values: Vec<Value> = values.into_iter().collect();
        assert_eq!(values[0], Value::Integer(-7));
        assert_eq!(values[1].as_string().unwrap().to_str().unwrap(), "call");
        assert_eq!(values[2].as_string().unwrap().to_str().unwrap(), "");
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let lua = Lua::new();
        let mut bytes = Vec::new();
        let values: MultiValue = lua.load("return {1, 'two', {3}}, 'x'").eval().unwrap();
        encode(values.iter(), &mut bytes, SocketMeta::none()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&lua, &bytes[..cut]).is_err());
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut noisy = bytes.clone();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state as usize) % noisy.len();
            noisy[at] = (state >> 32) as u8;
            let _ = decode(&lua, &noisy);
        }
        assert!(decode(&lua, &[255, 255, 255, 255]).is_err());
    }
}
