//! The state and storage interfaces of a runtime, both declared at spawn
//! and off by default (`spawn{state = true}`, `spawn{storage = ...}`).
//!
//! State protocol:
//! 1. A runtime's state is a map of string keys to values in the message
//!    codec's bytes (tables and Sub references included), held on the Rust
//!    side of its VM ([`StateStore`]): `get` copies a value out, `set`
//!    copies one in, `query(prefix)` walks the keys in order. What it
//!    holds is charged to the runtime's memory bound (the account its
//!    shared-dict writes pay into), so a runtime cannot pass its bound by
//!    putting things in its state.
//! 2. `save()` persists the keys changed since the last save: it takes
//!    them as a batch (a userdata only Rust makes, so a script cannot
//!    write another runtime's rows) and hands it to the lane, which writes
//!    them in one SQLite transaction to `state.sqlite` in the data
//!    directory (`--data DIR`), under the runtime's name. Saves of one
//!    runtime run one at a time (`model.lua` queues them); a failed save
//!    marks its keys changed again.
//! 3. A runtime spawned with a name and `state = true` reads what was
//!    saved under that name on the lane before its modules load.
//!
//! Storage is a SQLite database of the runtime's own (`storage =
//! "file.sqlite"`, relative to the data directory, or `true`:
//! `<name>.sqlite`): `lunet.storage()` is a database object whose every
//! call runs on the lane and yields. Its file is carried by a
//! [`StorageHandle`] userdata, so the lane calls reach that file only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lunet_core::lane::Task;
use lunet_core::shared_dict::Account;
use mlua::{Lua, MultiValue, Table, UserData, Value};

use crate::caps::{self, Capability};
use crate::codec::{self, SocketMeta};
use crate::lane::{failure, reply, with_db, LaneMisuse, Plain};
use crate::state::with_state;

/// What each entry costs beyond its key and value (the map's own nodes).
const ENTRY_OVERHEAD: usize = 64;
/// The file the states of every runtime are saved in, in the data directory.
const STATE_FILE: &str = "state.sqlite";

/// Why a state call failed (raised in Lua).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}: over quota: the runtime's state would pass its memory bound")]
    OverQuota(&'static str),
    #[error(
        "state:save: this runtime has no name to save its state under (spawn it with name = ...)"
    )]
    NoName,
}

/// Step 1: a runtime's state.
pub struct StateStore {
    /// The runtime's name: where it is saved (step 2) and read from (3).
    name: Option<String>,
    file: PathBuf,
    entries: BTreeMap<String, Vec<u8>>,
    /// Keys changed since the last save began.
    changed: BTreeSet<String>,
    /// Keys of the save in progress.
    saving: Vec<String>,
    account: Option<Arc<Account>>,
}

fn cost(key: &str, value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl StateStore {
    pub fn new(name: Option<String>, data_dir: &Path, account: Option<Arc<Account>>) -> StateStore {
        StateStore {
            name,
            file: data_dir.join(STATE_FILE),
            entries: BTreeMap::new(),
            changed: BTreeSet::new(),
            saving: Vec::new(),
            account,
        }
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).cloned()
    }

    /// Stores (or with `None` removes) `key`, charging the account.
    pub fn set(
        &mut self,
        key: &str,
        value: Option<Vec<u8>>,
        what: &'static str,
    ) -> Result<(), StateError> {
        let old = self.entries.get(key).map(|old| cost(key, old)).unwrap_or(0);
        let new = value.as_ref().map(|new| cost(key, new)).unwrap_or(0);
        if let Some(account) = &self.account {
            if new > old && !account.charge(new - old) {
                return Err(StateError::OverQuota(what));
            }
            if old > new {
                account.release(old - new);
            }
        }
        match value {
            Some(value) => self.entries.insert(key.to_string(), value),
            None => self.entries.remove(key),
        };
        self.changed.insert(key.to_string());
        Ok(())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn query(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.entries
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Step 2: the changed keys as a batch (`None`: nothing changed).
    pub fn batch(&mut self) -> Result<Option<SaveBatch>, StateError> {
        let name = self.name.clone().ok_or(StateError::NoName)?;
        if self.changed.is_empty() {
            return Ok(None);
        }
        self.saving = std::mem::take(&mut self.changed).into_iter().collect();
        let rows = self
            .saving
            .iter()
            .map(|key| (key.clone(), self.entries.get(key).cloned()))
            .collect();
        Ok(Some(SaveBatch {
            file: self.file.clone(),
            name,
            rows,
        }))
    }

    /// Step 2: the save in progress ended; if it failed, its keys are
    /// changed again.
    pub fn saved(&mut self, ok: bool) {
        let keys = std::mem::take(&mut self.saving);
        if !ok {
            self.changed.extend(keys);
        }
    }

    /// Step 3: what reads the saved state, if the runtime has a name.
    pub fn loader(&self) -> Option<StateLoad> {
        Some(StateLoad {
            file: self.file.clone(),
            name: self.name.clone()?,
        })
    }

    /// Step 3: the saved entries, as they were (not changed since).
    pub fn restore(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), StateError> {
        for (key, value) in entries {
            self.set(&key, Some(value), "lunet.state")?;
        }
        self.changed.clear();
        Ok(())
    }
}

impl Drop for StateStore {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            let held: usize = self.entries.iter().map(|(k, v)| cost(k, v)).sum();
            account.release(held);
        }
    }
}

/// Step 2: the rows a save writes (`None`: the key was removed).
pub struct SaveBatch {
    file: PathBuf,
    name: String,
    rows: Vec<(String, Option<Vec<u8>>)>,
}

impl UserData for SaveBatch {}

/// Step 3: where a runtime's saved state is.
#[derive(Clone)]
pub struct StateLoad {
    file: PathBuf,
    name: String,
}

impl UserData for StateLoad {}

/// The database of a runtime's storage interface.
#[derive(Clone)]
pub struct StorageHandle {
    pub path: String,
}

impl UserData for StorageHandle {}

const CREATE: &str = "create table if not exists state (runtime text not null, key text not null, \
                      value blob not null, primary key (runtime, key)) without rowid";

fn first_userdata<'a>(
    values: &'a MultiValue,
    what: &'static str,
) -> Result<&'a mlua::AnyUserData, LaneMisuse> {
    match values.front() {
        Some(Value::UserData(data)) => Ok(data),
        _ => Err(LaneMisuse::NotOurs(what)),
    }
}

/// The lane task that reads a runtime's saved state (step 3): a list of
/// `{key, value}`.
pub fn load_task(values: &MultiValue) -> Result<Task, LaneMisuse> {
    let load = first_userdata(values, "lunet.state")?
        .borrow::<StateLoad>()
        .map_err(|_| LaneMisuse::NotOurs("lunet.state"))?
        .clone();
    Ok(Box::new(move || {
        if !load.file.exists() {
            return reply(vec![Plain::List(Vec::new())]);
        }
        let path = load.file.display().to_string();
        let rows = with_db(&path, |conn| {
            conn.execute(CREATE, [])?;
            let mut statement =
                conn.prepare_cached("select key, value from state where runtime = ?")?;
            let rows = statement.query_map([&load.name], |row| {
                Ok(Plain::List(vec![
                    Plain::Str(row.get::<_, String>(0)?.into_bytes()),
                    Plain::Str(row.get::<_, Vec<u8>>(1)?),
                ]))
            })?;
            rows.collect::<rusqlite::Result<Vec<Plain>>>()
        });
        match rows {
            Ok(rows) => reply(vec![Plain::List(rows)]),
            Err(e) => failure(e.to_string()),
        }
    }))
}

/// The lane task of a save (step 2).
pub fn save_task(values: &MultiValue) -> Result<Task, LaneMisuse> {
    let batch = first_userdata(values, "state:save")?
        .take::<SaveBatch>()
        .map_err(|_| LaneMisuse::NotOurs("state:save"))?;
    Ok(Box::new(move || {
        if let Some(dir) = batch.file.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                return failure(format!("{}: {e}", dir.display()));
            }
        }
        let path = batch.file.display().to_string();
        let written = with_db(&path, |conn| {
            conn.execute(CREATE, [])?;
            let transaction = conn.transaction()?;
            for (key, value) in &batch.rows {
                match value {
                    Some(value) => transaction.execute(
                        "insert or replace into state (runtime, key, value) values (?, ?, ?)",
                        rusqlite::params![batch.name, key, value],
                    )?,
                    None => transaction.execute(
                        "delete from state where runtime = ? and key = ?",
                        rusqlite::params![batch.name, key],
                    )?,
                };
            }
            transaction.commit()
        });
        match written {
            Ok(()) => reply(vec![Plain::Bool(true)]),
            Err(e) => failure(e.to_string()),
        }
    }))
}

/// The database file of a storage call: the handle's, never a path from Lua.
pub fn storage_path(values: &MultiValue, what: &'static str) -> Result<String, LaneMisuse> {
    Ok(first_userdata(values, what)?
        .borrow::<StorageHandle>()
        .map_err(|_| LaneMisuse::NotOurs(what))?
        .path
        .clone())
}

/// The refusal of a state or storage call in a runtime that did not
/// declare it. A sandbox gets the capability's refusal; a trusted service
/// holds every capability but opens neither unless declared.
fn undeclared(lua: &Lua, what: &str, capability: Capability) -> mlua::Error {
    let trusted = with_state(lua, |state| state.caps.is_trusted()).unwrap_or(false);
    if trusted {
        let option = match capability {
            Capability::State => "state = true",
            _ => "storage = \"file.sqlite\" or storage = true",
        };
        mlua::Error::runtime(format!(
            "{what}: this runtime was spawned without {} (spawn it with {option})",
            capability.name()
        ))
    } else {
        caps::denied(what, capability)
    }
}

fn runtime_error(error: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(error.to_string())
}

/// Runs `f` on the runtime's state store, or raises that it has none.
fn with_store<R>(
    lua: &Lua,
    what: &'static str,
    f: impl FnOnce(&mut StateStore) -> R,
) -> mlua::Result<R> {
    with_state(lua, |state| state.model.state.as_mut().map(f))?
        .ok_or_else(|| undeclared(lua, what, Capability::State))
}

fn decode_one(lua: &Lua, bytes: &[u8]) -> mlua::Result<Value> {
    let mut values = codec::decode(lua, bytes).map_err(runtime_error)?;
    Ok(values.pop_front().unwrap_or(Value::Nil))
}

/// Adds the state and storage calls to `core`.
pub fn install(lua: &Lua, core: &Table, meta: SocketMeta) -> mlua::Result<()> {
    core.set(
        "state_check",
        lua.create_function(|lua, ()| with_store(lua, "lunet.state", |_| ()))?,
    )?;
    core.set(
        "state_get",
        lua.create_function(|lua, key: String| {
            match with_store(lua, "state:get", |store| store.get(&key))? {
                Some(bytes) => decode_one(lua, &bytes),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    core.set(
        "state_set",
        lua.create_function(move |lua, (key, value): (String, Value)| {
            let bytes = match value {
                Value::Nil => None,
                value => {
                    let mut bytes = Vec::new();
                    codec::encode(std::iter::once(&value), &mut bytes, meta)
                        .map_err(|e| runtime_error(format!("state:set: {e}")))?;
                    Some(bytes)
                }
            };
            with_store(lua, "state:set", |store| {
                store.set(&key, bytes, "state:set")
            })?
            .map_err(runtime_error)?;
            Ok(true)
        })?,
    )?;
    core.set(
        "state_query",
        lua.create_function(|lua, prefix: Option<String>| {
            let prefix = prefix.unwrap_or_default();
            let entries = with_store(lua, "state:query", |store| store.query(&prefix))?;
            let table = lua.create_table_with_capacity(0, entries.len())?;
            for (key, bytes) in entries {
                table.raw_set(key, decode_one(lua, &bytes)?)?;
            }
            Ok(table)
        })?,
    )?;
    core.set(
        "state_batch",
        lua.create_function(|lua, ()| {
            match with_store(lua, "state:save", |store| store.batch())?.map_err(runtime_error)? {
                Some(batch) => Ok(Value::UserData(lua.create_userdata(batch)?)),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    core.set(
        "state_saved",
        lua.create_function(|lua, ok: bool| {
            with_store(lua, "state:save", |store| store.saved(ok))
        })?,
    )?;
    core.set(
        "state_loader",
        lua.create_function(|lua, ()| {
            let loader = with_state(lua, |state| {
                state.model.state.as_ref().and_then(StateStore::loader)
            })?;
            match loader {
                Some(loader) => Ok(Value::UserData(lua.create_userdata(loader)?)),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    core.set(
        "state_restore",
        lua.create_function(|lua, rows: Table| {
            let mut entries = Vec::new();
            for row in rows.sequence_values::<Table>() {
                let row = row?;
                let key: mlua::LuaString = row.raw_get(1)?;
                let value: mlua::LuaString = row.raw_get(2)?;
                entries.push((key.to_str()?.to_string(), value.as_bytes().to_vec()));
            }
            with_store(lua, "lunet.state", |store| store.restore(entries))?.map_err(runtime_error)
        })?,
    )?;
    core.set(
        "storage_handle",
        lua.create_function(|lua, ()| {
            let path = with_state(lua, |state| state.model.storage.clone())?
                .ok_or_else(|| undeclared(lua, "lunet.storage", Capability::Storage))?;
            lua.create_userdata(StorageHandle { path })
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_charges_its_bound_and_saves_what_changed() {
        let account = Account::new(300, None);
        let mut store = StateStore::new(Some("r".into()), Path::new("/tmp"), Some(account.clone()));
        store.set("user", Some(vec![1; 10]), "state:set").unwrap();
        store
            .set("users:1", Some(vec![2; 10]), "state:set")
            .unwrap();
        store
            .set("users:2", Some(vec![3; 10]), "state:set")
            .unwrap();
        assert_eq!(account.used(), 3 * 64 + 4 + 7 + 7 + 30);
        assert!(matches!(
            store.set("big", Some(vec![0; 200]), "state:set"),
            Err(StateError::OverQuota(_))
        ));
        let keys: Vec<String> = store.query("users:").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["users:1", "users:2"]);
        assert_eq!(store.query("").len(), 3);
        let batch = store.batch().unwrap().unwrap();
        assert_eq!(batch.rows.len(), 3);
        assert!(store.batch().unwrap().is_none(), "nothing changed since");
        store.saved(false);
        assert_eq!(
            store.batch().unwrap().unwrap().rows.len(),
            3,
            "a failed save is redone"
        );
        store.saved(true);
        store.set("user", None, "state:set").unwrap();
        let batch = store.batch().unwrap().unwrap();
        assert_eq!(batch.rows, vec![("user".to_string(), None)]);
        drop(store);
        assert_eq!(account.used(), 0);
        let mut nameless = StateStore::new(None, Path::new("/tmp"), None);
        nameless.set("x", Some(vec![1]), "state:set").unwrap();
        assert!(matches!(nameless.batch(), Err(StateError::NoName)));
        assert!(nameless.loader().is_none());
    }
}
