//! The codec for values between services (each service is its own VM, so a
//! message is bytes). Supports nil, booleans, integers, floats, strings and
//! nested tables; a cycle, a function, userdata, a coroutine or nesting
//! deeper than [`MAX_DEPTH`] is an error at the sender. Decoding checks
//! every length, so a corrupt payload is an error, never a panic.
//!
//! Layout: a count of values (u32 LE), then each value as a tag byte and
//! its payload. A table is its array part (1..n) then its other pairs.

use std::ffi::c_void;

use mlua::{Lua, MultiValue, Table, Value};

pub const MAX_DEPTH: usize = 32;

const NIL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STR: u8 = 5;
const TABLE: u8 = 6;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot send a {0} to another service")]
    Type(&'static str),
    #[error("cannot send a table that contains itself (a cycle)")]
    Cycle,
    #[error("cannot send tables nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("corrupt message")]
    Corrupt,
    #[error("{0}")]
    Lua(#[from] mlua::Error),
}

/// Encodes `values` (appending to `out`).
pub fn encode<'a>(
    values: impl ExactSizeIterator<Item = &'a Value>,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    let mut path = Vec::new();
    for value in values {
        encode_value(value, out, &mut path)?;
    }
    Ok(())
}

fn encode_value(
    value: &Value,
    out: &mut Vec<u8>,
    path: &mut Vec<*const c_void>,
) -> Result<(), CodecError> {
    match value {
        Value::Nil => out.push(NIL),
        Value::Boolean(false) => out.push(FALSE),
        Value::Boolean(true) => out.push(TRUE),
        Value::Integer(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Number(f) => {
            out.push(FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            out.push(STR);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Value::Table(table) => encode_table(table, out, path)?,
        Value::Function(_) => return Err(CodecError::Type("function")),
        Value::Thread(_) => return Err(CodecError::Type("coroutine")),
        Value::UserData(_) | Value::LightUserData(_) => return Err(CodecError::Type("userdata")),
        Value::Error(_) => return Err(CodecError::Type("error object")),
        _ => return Err(CodecError::Type("value of this type")),
    }
    Ok(())
}

fn encode_table(
    table: &Table,
    out: &mut Vec<u8>,
    path: &mut Vec<*const c_void>,
) -> Result<(), CodecError> {
    let pointer = table.to_pointer();
    if path.contains(&pointer) {
        return Err(CodecError::Cycle);
    }
    if path.len() >= MAX_DEPTH {
        return Err(CodecError::TooDeep);
    }
    path.push(pointer);
    out.push(TABLE);
    let array_len = table.raw_len();
    out.extend_from_slice(&(array_len as u32).to_le_bytes());
    let pairs_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    for i in 1..=array_len {
        let value: Value = table.raw_get(i)?;
        encode_value(&value, out, path)?;
    }
    let mut pairs = 0u32;
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair?;
        if let Value::Integer(i) = key {
            if i >= 1 && (i as usize) <= array_len {
                continue;
            }
        }
        encode_value(&key, out, path)?;
        encode_value(&value, out, path)?;
        pairs += 1;
    }
    out[pairs_at..pairs_at + 4].copy_from_slice(&pairs.to_le_bytes());
    path.pop();
    Ok(())
}

/// Encodes one string as a whole payload (error answers).
pub fn encode_str(message: &str, out: &mut Vec<u8>) -> Result<(), CodecError> {
    out.extend_from_slice(&1u32.to_le_bytes());
    out.push(STR);
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message.as_bytes());
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
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
}

/// Decodes a payload made by [`encode`] into Lua values of `lua`.
pub fn decode(lua: &Lua, bytes: &[u8]) -> Result<MultiValue, CodecError> {
    let mut reader = Reader { bytes, at: 0 };
    let count = reader.u32()? as usize;
    // Every value takes at least one byte: a bogus count cannot allocate much.
    if count > bytes.len() {
        return Err(CodecError::Corrupt);
    }
    let mut values = MultiValue::with_capacity(count);
    for _ in 0..count {
        values.push_back(decode_value(lua, &mut reader, 0)?);
    }
    Ok(values)
}

fn decode_value(lua: &Lua, reader: &mut Reader, depth: usize) -> Result<Value, CodecError> {
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
                table.raw_set(i, decode_value(lua, reader, depth + 1)?)?;
            }
            for _ in 0..pairs {
                let key = decode_value(lua, reader, depth + 1)?;
                let value = decode_value(lua, reader, depth + 1)?;
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
        encode(values.iter(), &mut bytes)?;
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
    fn shared_subtables_are_not_cycles() {
        let lua = Lua::new();
        let values = round_trip(&lua, "local s = {1} return {s, s}").unwrap();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let lua = Lua::new();
        let mut bytes = Vec::new();
        let values: MultiValue = lua.load("return {1, 'two', {3}}, 'x'").eval().unwrap();
        encode(values.iter(), &mut bytes).unwrap();
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
