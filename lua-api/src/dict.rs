//! `lunet.shared.dict(name [, capacity])`: the Lua face of
//! `lunet_core::shared_dict` (state shared by every VM, like OpenResty's
//! `lua_shared_dict`). Nothing here yields: a call takes one shard lock.

use std::sync::Arc;

use lunet_core::now_ms;
use lunet_core::shared_dict::{self, DictError, SharedDict, Value as DictValue};
use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};

pub struct Dict {
    name: String,
    inner: Arc<SharedDict>,
}

fn to_dict(value: Value, what: &str) -> mlua::Result<DictValue> {
    Ok(match value {
        Value::String(s) => DictValue::Str(s.as_bytes().to_vec()),
        Value::Integer(i) => DictValue::Int(i),
        Value::Number(f) => DictValue::Float(f),
        Value::Boolean(b) => DictValue::Bool(b),
        other => {
            return Err(mlua::Error::runtime(format!(
                "{what}: a value must be a string, number or boolean, got {}",
                other.type_name()
            )))
        }
    })
}

fn from_dict(lua: &Lua, value: DictValue) -> mlua::Result<Value> {
    Ok(match value {
        DictValue::Str(s) => Value::String(lua.create_string(s)?),
        DictValue::Int(i) => Value::Integer(i),
        DictValue::Float(f) => Value::Number(f),
        DictValue::Bool(b) => Value::Boolean(b),
    })
}

/// ttl in ms; nil, 0 or negative = never expires (as OpenResty's exptime 0).
fn ttl(ms: Option<f64>) -> Option<u64> {
    match ms {
        Some(ms) if ms > 0.0 => Some(ms.ceil() as u64),
        _ => None,
    }
}

fn error_word(e: DictError) -> &'static str {
    match e {
        DictError::NoMemory => "no memory",
        DictError::Exists => "exists",
        DictError::NotFound => "not found",
        DictError::NotANumber => "not a number",
        DictError::Overflow => "integer overflow",
    }
}

type Store = fn(
    &SharedDict,
    &[u8],
    DictValue,
    Option<u64>,
    u64,
) -> Result<shared_dict::SetOutcome, DictError>;

fn store(
    dict: &Dict,
    store: Store,
    what: &str,
    key: mlua::LuaString,
    value: Value,
    ttl_ms: Option<f64>,
) -> mlua::Result<(Option<bool>, Option<&'static str>, bool)> {
    if value == Value::Nil {
        dict.inner.delete(&key.as_bytes(), now_ms());
        return Ok((Some(true), None, false));
    }
    let value = to_dict(value, what)?;
    match store(&dict.inner, &key.as_bytes(), value, ttl(ttl_ms), now_ms()) {
        Ok(outcome) => Ok((Some(true), None, outcome.evicted > 0)),
        Err(e) => Ok((None, Some(error_word(e)), false)),
    }
}

impl UserData for Dict {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, key: mlua::LuaString| {
            match this.inner.get(&key.as_bytes(), now_ms()) {
                Some(value) => from_dict(lua, value),
                None => Ok(Value::Nil),
            }
        });
        methods.add_method(
            "set",
            |_, this, (key, value, ttl_ms): (mlua::LuaString, Value, Option<f64>)| {
                store(this, SharedDict::set, "dict:set", key, value, ttl_ms)
            },
        );
        methods.add_method(
            "add",
            |_, this, (key, value, ttl_ms): (mlua::LuaString, Value, Option<f64>)| {
                store(this, SharedDict::add, "dict:add", key, value, ttl_ms)
            },
        );
        methods.add_method(
            "replace",
            |_, this, (key, value, ttl_ms): (mlua::LuaString, Value, Option<f64>)| {
                store(
                    this,
                    SharedDict::replace,
                    "dict:replace",
                    key,
                    value,
                    ttl_ms,
                )
            },
        );
        methods.add_method(
            "incr",
            |lua, this, (key, by, init, init_ttl): (mlua::LuaString, Value, Option<Value>, Option<f64>)| {
                let by = match by {
                    Value::Integer(_) | Value::Number(_) => to_dict(by, "dict:incr")?,
                    other => {
                        return Err(mlua::Error::runtime(format!(
                            "dict:incr: the increment must be a number, got {}",
                            other.type_name()
                        )))
                    }
                };
                let init = match init {
                    None | Some(Value::Nil) => None,
                    Some(v @ (Value::Integer(_) | Value::Number(_))) => Some(to_dict(v, "dict:incr")?),
                    Some(other) => {
                        return Err(mlua::Error::runtime(format!(
                            "dict:incr: init must be a number, got {}",
                            other.type_name()
                        )))
                    }
                };
                match this.inner.incr(&key.as_bytes(), by, init, ttl(init_ttl), now_ms()) {
                    Ok(value) => Ok((from_dict(lua, value)?, None)),
                    Err(e) => Ok((Value::Nil, Some(error_word(e)))),
                }
            },
        );
        methods.add_method("delete", |_, this, key: mlua::LuaString| {
            this.inner.delete(&key.as_bytes(), now_ms());
            Ok(true)
        });
        methods.add_method(
            "expire",
            |_, this, (key, ttl_ms): (mlua::LuaString, Option<f64>)| match this.inner.expire(
                &key.as_bytes(),
                ttl(ttl_ms),
                now_ms(),
            ) {
                Ok(()) => Ok((Some(true), None)),
                Err(e) => Ok((None, Some(error_word(e)))),
            },
        );
        methods.add_method("ttl", |_, this, key: mlua::LuaString| {
            match this.inner.ttl(&key.as_bytes(), now_ms()) {
                Ok(Some(ms)) => Ok((Some(ms as i64), None)),
                Ok(None) => Ok((Some(0), None)),
                Err(e) => Ok((None, Some(error_word(e)))),
            }
        });
        methods.add_method("keys", |lua, this, max: Option<i64>| {
            let keys = this.inner.keys(max.unwrap_or(0).max(0) as usize, now_ms());
            let table = lua.create_table_with_capacity(keys.len(), 0)?;
            for (i, key) in keys.into_iter().enumerate() {
                table.raw_set(i + 1, lua.create_string(key)?)?;
            }
            Ok(table)
        });
        methods.add_method("size", |_, this, ()| Ok(this.inner.len(now_ms()) as i64));
        methods.add_method("capacity", |_, this, ()| Ok(this.inner.capacity() as i64));
        methods.add_method("used", |_, this, ()| Ok(this.inner.used_bytes() as i64));
        methods.add_method("flush", |_, this, ()| {
            this.inner.flush();
            Ok(true)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("lunet.shared.dict({})", this.name))
        });
    }
}

/// `lunet.shared.dict(name [, capacity_bytes])`.
pub fn open(_: &Lua, (name, capacity): (String, Option<i64>)) -> mlua::Result<Dict> {
    let capacity = match capacity {
        Some(c) if c <= 0 => {
            return Err(mlua::Error::runtime(
                "lunet.shared.dict: capacity must be positive",
            ))
        }
        Some(c) => Some(c as usize),
        None => None,
    };
    Ok(Dict {
        inner: shared_dict::dict(&name, capacity),
        name,
    })
}
