//! `lunet.shared.dict(name [, capacity])`: the Lua face of
//! `lunet_core::shared_dict` (state shared by every VM, like OpenResty's
//! `lua_shared_dict`). Nothing here yields: a call takes one shard lock.
//!
//! Reaching a dict takes the `dicts` capability (all dicts, or the names
//! listed). What a service writes is paid for by its account (its memory
//! limit; a sandbox's children pay into its account too), so a service
//! cannot hold more in dicts than its bound, whatever the dicts' capacity.

use std::sync::Arc;

use lunet_core::now_ms;
use lunet_core::shared_dict::{self, Account, DictError, Mode, SharedDict, Value as DictValue};
use mlua::{Lua, MetaMethod, UserData, UserDataMethods, Value};

use crate::caps::{self, Capability};
use crate::state::with_state;

pub struct Dict {
    name: String,
    inner: Arc<SharedDict>,
    /// Who pays for this VM's writes (`None`: no bound but the capacity).
    account: Option<Arc<Account>>,
}

fn to_dict(value: Value, what: &str) -> mlua::Result<DictValue> {
    Ok(match value {
        Value::String(s) => DictValue::Str(Arc::from(&*s.as_bytes())),
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
        DictValue::Str(s) => Value::String(lua.create_string(&*s)?),
        DictValue::Int(i) => Value::Integer(i),
        DictValue::Float(f) => Value::Number(f),
        DictValue::Bool(b) => Value::Boolean(b),
    })
}

/// ttl in ms; nil or 0 = never expires (as OpenResty's exptime 0). A
/// negative, NaN or infinite one is misuse: it raises.
fn ttl(ms: Option<f64>, what: &str) -> mlua::Result<Option<u64>> {
    match ms {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(ms) if ms > 0.0 && ms.is_finite() => Ok(Some(ms.ceil() as u64)),
        Some(ms) => Err(mlua::Error::runtime(format!(
            "{what}: the ttl must be a finite number of milliseconds >= 0 (0 or nil: no expiry), got {ms}"
        ))),
    }
}

fn error_word(e: DictError) -> &'static str {
    match e {
        DictError::NoMemory => "no memory",
        DictError::Exists => "exists",
        DictError::NotFound => "not found",
        DictError::NotANumber => "not a number",
        DictError::Overflow => "integer overflow",
        DictError::OverQuota => "over quota",
    }
}

fn store(
    dict: &Dict,
    mode: Mode,
    what: &str,
    key: mlua::LuaString,
    value: Value,
    ttl_ms: Option<f64>,
) -> mlua::Result<(Option<bool>, Option<&'static str>, bool)> {
    if value == Value::Nil {
        dict.inner.delete(&key.as_bytes(), now_ms());
        return Ok((Some(true), None, false));
    }
    let ttl = ttl(ttl_ms, what)?;
    // Too big for any shard: refused before the value is copied.
    let size = key.as_bytes().len().saturating_add(match &value {
        Value::String(s) => s.as_bytes().len(),
        _ => 8,
    });
    if size > dict.inner.max_entry_bytes() {
        return Ok((None, Some(error_word(DictError::NoMemory)), false));
    }
    let value = to_dict(value, what)?;
    let account = dict.account.as_ref();
    match dict
        .inner
        .write(mode, &key.as_bytes(), value, ttl, now_ms(), account)
    {
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
                store(this, Mode::Set, "dict:set", key, value, ttl_ms)
            },
        );
        methods.add_method(
            "add",
            |_, this, (key, value, ttl_ms): (mlua::LuaString, Value, Option<f64>)| {
                store(this, Mode::Add, "dict:add", key, value, ttl_ms)
            },
        );
        methods.add_method(
            "replace",
            |_, this, (key, value, ttl_ms): (mlua::LuaString, Value, Option<f64>)| {
                store(this, Mode::Replace, "dict:replace", key, value, ttl_ms)
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
                let init_ttl = ttl(init_ttl, "dict:incr")?;
                let account = this.account.as_ref();
                match this.inner.incr_as(&key.as_bytes(), by, init, init_ttl, now_ms(), account) {
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
            |_, this, (key, ttl_ms): (mlua::LuaString, Option<f64>)| {
                let ttl = ttl(ttl_ms, "dict:expire")?;
                match this.inner.expire(&key.as_bytes(), ttl, now_ms()) {
                    Ok(()) => Ok((Some(true), None)),
                    Err(e) => Ok((None, Some(error_word(e)))),
                }
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
pub fn open(lua: &Lua, (name, capacity): (Value, Option<i64>)) -> mlua::Result<Dict> {
    const WHAT: &str = "lunet.shared.dict";
    caps::require(lua, Capability::Dicts, WHAT)?;
    let Value::String(name) = name else {
        return Err(mlua::Error::runtime(format!(
            "{WHAT}: the name must be a string, got {}",
            name.type_name()
        )));
    };
    let (reachable, account) = with_state(lua, |state| {
        (
            state.caps.allows_dict(&name.as_bytes()),
            state.dict_account.clone(),
        )
    })?;
    let name = name.to_string_lossy();
    if !reachable {
        return Err(mlua::Error::runtime(format!(
            "{WHAT}: not permitted: spawned without dicts '{name}' (its caps list other dicts)"
        )));
    }
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
        account,
    })
}
