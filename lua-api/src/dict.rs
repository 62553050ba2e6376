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
use mlua::{AnyUserData, Lua, MetaMethod, UserData, UserDataMethods, Value};

use crate::caps::{self, Capability};
use crate::state::with_state;

pub struct Dict {
    name: String,
    target: Target,
}

/// The dict a `Dict` reaches and who pays for its writes: what both its
/// mlua methods and their fast paths (`dict_fast.rs`) work on.
#[derive(Clone)]
pub(crate) struct Target {
    inner: Arc<SharedDict>,
    /// Who pays for this VM's writes (`None`: no bound but the capacity).
    account: Option<Arc<Account>>,
}

/// A value to write, before it is copied into the dict.
pub(crate) enum Stored<'a> {
    Bytes(&'a [u8]),
    /// An integer, number or boolean.
    Plain(DictValue),
}

/// What a write answers: `true` or `nil, err`, then whether it evicted
/// entries for room (OpenResty's `forcible`).
pub(crate) type Written = (Option<bool>, Option<&'static str>, bool);

impl Target {
    pub(crate) fn get(&self, key: &[u8]) -> Option<DictValue> {
        self.inner.get(key, now_ms())
    }

    /// Writes `value` under `key` (`None`: deletes it).
    pub(crate) fn write(
        &self,
        mode: Mode,
        key: &[u8],
        value: Option<Stored>,
        ttl: Option<u64>,
    ) -> Written {
        let Some(value) = value else {
            self.inner.delete(key, now_ms());
            return (Some(true), None, false);
        };
        // Too big for any shard: refused before the value is copied.
        let size = key.len().saturating_add(match &value {
            Stored::Bytes(bytes) => bytes.len(),
            Stored::Plain(_) => 8,
        });
        if size > self.inner.max_entry_bytes() {
            return (None, Some(error_word(DictError::NoMemory)), false);
        }
        let value = match value {
            Stored::Bytes(bytes) => DictValue::Str(Arc::from(bytes)),
            Stored::Plain(value) => value,
        };
        let account = self.account.as_ref();
        match self.inner.write(mode, key, value, ttl, now_ms(), account) {
            Ok(outcome) => (Some(true), None, outcome.evicted > 0),
            Err(e) => (None, Some(error_word(e)), false),
        }
    }

    pub(crate) fn incr(
        &self,
        key: &[u8],
        by: DictValue,
        init: Option<DictValue>,
        init_ttl: Option<u64>,
    ) -> Result<DictValue, &'static str> {
        let account = self.account.as_ref();
        self.inner
            .incr_as(key, by, init, init_ttl, now_ms(), account)
            .map_err(error_word)
    }

    pub(crate) fn delete(&self, key: &[u8]) {
        self.inner.delete(key, now_ms());
    }

    /// ms left, 0 when it never expires, or the error word.
    pub(crate) fn ttl(&self, key: &[u8]) -> Result<i64, &'static str> {
        match self.inner.ttl(key, now_ms()) {
            Ok(Some(ms)) => Ok(ms as i64),
            Ok(None) => Ok(0),
            Err(e) => Err(error_word(e)),
        }
    }
}

fn to_dict(value: Value, what: &str) -> mlua::Result<DictValue> {
    Ok(match value {
        Value::String(s) => DictValue::Str(Arc::from(&*s.as_bytes())),
        Value::Integer(i) => DictValue::Int(i),
        Value::Number(f) => DictValue::Float(f),
        Value::Boolean(b) => DictValue::Bool(b),
        other => return Err(not_a_value(what, &other)),
    })
}

fn not_a_value(what: &str, value: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{what}: a value must be a string, number or boolean, got {}",
        value.type_name()
    ))
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
        Some(ms) => valid_ttl(ms).ok_or_else(|| {
            mlua::Error::runtime(format!(
                "{what}: the ttl must be a finite number of milliseconds >= 0 (0 or nil: no expiry), got {ms}"
            ))
        }),
    }
}

/// A ttl argument in ms as the dict takes it (`Some(None)`: no expiry),
/// or `None` when it is misuse.
pub(crate) fn valid_ttl(ms: f64) -> Option<Option<u64>> {
    if ms == 0.0 {
        Some(None)
    } else if ms > 0.0 && ms.is_finite() {
        Some(Some(ms.ceil() as u64))
    } else {
        None
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
) -> mlua::Result<Written> {
    let key = key.as_bytes();
    if value == Value::Nil {
        return Ok(dict.target.write(mode, &key, None, None));
    }
    let ttl = ttl(ttl_ms, what)?;
    Ok(match value {
        Value::String(s) => dict
            .target
            .write(mode, &key, Some(Stored::Bytes(&s.as_bytes())), ttl),
        Value::Integer(_) | Value::Number(_) | Value::Boolean(_) => {
            let value = to_dict(value, what)?;
            dict.target
                .write(mode, &key, Some(Stored::Plain(value)), ttl)
        }
        // Refused as too big before its type is looked at (as ever).
        _ if key.len().saturating_add(8) > dict.target.inner.max_entry_bytes() => {
            (None, Some(error_word(DictError::NoMemory)), false)
        }
        other => return Err(not_a_value(what, &other)),
    })
}

impl UserData for Dict {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, key: mlua::LuaString| {
            match this.target.get(&key.as_bytes()) {
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
                match this.target.incr(&key.as_bytes(), by, init, init_ttl) {
                    Ok(value) => Ok((from_dict(lua, value)?, None)),
                    Err(word) => Ok((Value::Nil, Some(word))),
                }
            },
        );
        methods.add_method("delete", |_, this, key: mlua::LuaString| {
            this.target.delete(&key.as_bytes());
            Ok(true)
        });
        methods.add_method(
            "expire",
            |_, this, (key, ttl_ms): (mlua::LuaString, Option<f64>)| {
                let ttl = ttl(ttl_ms, "dict:expire")?;
                match this.target.inner.expire(&key.as_bytes(), ttl, now_ms()) {
                    Ok(()) => Ok((Some(true), None)),
                    Err(e) => Ok((None, Some(error_word(e)))),
                }
            },
        );
        methods.add_method("ttl", |_, this, key: mlua::LuaString| {
            match this.target.ttl(&key.as_bytes()) {
                Ok(ms) => Ok((Some(ms), None)),
                Err(word) => Ok((None, Some(word))),
            }
        });
        methods.add_method("keys", |lua, this, max: Option<i64>| {
            let keys = this
                .target
                .inner
                .keys(max.unwrap_or(0).max(0) as usize, now_ms());
            let table = lua.create_table_with_capacity(keys.len(), 0)?;
            for (i, key) in keys.into_iter().enumerate() {
                table.raw_set(i + 1, lua.create_string(key)?)?;
            }
            Ok(table)
        });
        methods.add_method("size", |_, this, ()| {
            Ok(this.target.inner.len(now_ms()) as i64)
        });
        methods.add_method("capacity", |_, this, ()| {
            Ok(this.target.inner.capacity() as i64)
        });
        methods.add_method("used", |_, this, ()| {
            Ok(this.target.inner.used_bytes() as i64)
        });
        methods.add_method("flush", |_, this, ()| {
            this.target.inner.flush();
            Ok(true)
        });
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!("lunet.shared.dict({})", this.name))
        });
    }
}

/// `lunet.shared.dict(name [, capacity_bytes])`.
pub fn open(lua: &Lua, (name, capacity): (Value, Option<i64>)) -> mlua::Result<AnyUserData> {
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
    let target = Target {
        inner: shared_dict::dict(&name, capacity),
        account,
    };
    let dict = lua.create_userdata(Dict {
        name,
        target: target.clone(),
    })?;
    crate::dict_fast::register(lua, &dict, target)?;
    Ok(dict)
}
