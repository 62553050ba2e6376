//! Lane calls: blocking work (SQLite, files, DNS, a blocking sleep) that a
//! session hands to the lane. The session yields `(OP.LANE, op, args...)`;
//! [`build_task`] turns that into a Rust closure of plain values (Lua never
//! runs on the lane); its [`LaneReply`] comes back as `Event::LaneDone` and
//! becomes the values the session's `yield` returns.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use lunet_core::lane::Task;

use crate::protocol::LaneOp;
use mlua::{Lua, MultiValue, Value};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// How long a lane thread waits on a locked database before SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A value that can cross to the lane and back (no Lua references).
#[derive(Clone, Debug, PartialEq)]
pub enum Plain {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    List(Vec<Plain>),
    Map(Vec<(String, Plain)>),
}

impl Plain {
    /// A scalar from Lua (what SQL binds take), for the call `call`.
    fn scalar(value: &Value, call: &'static str) -> Result<Plain, LaneMisuse> {
        Ok(match value {
            Value::Nil => Plain::Nil,
            Value::Boolean(b) => Plain::Bool(*b),
            Value::Integer(i) => Plain::Int(*i),
            Value::Number(f) => Plain::Float(*f),
            Value::String(s) => Plain::Str(s.as_bytes().to_vec()),
            other => {
                return Err(LaneMisuse::Bind {
                    call,
                    type_name: other.type_name(),
                })
            }
        })
    }

    pub fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Plain::Nil => Value::Nil,
            Plain::Bool(b) => Value::Boolean(b),
            Plain::Int(i) => Value::Integer(i),
            Plain::Float(f) => Value::Number(f),
            Plain::Str(s) => Value::String(lua.create_string(s)?),
            Plain::List(items) => {
                let table = lua.create_table_with_capacity(items.len(), 0)?;
                for (i, item) in items.into_iter().enumerate() {
                    table.raw_set(i + 1, item.into_lua(lua)?)?;
                }
                Value::Table(table)
            }
            Plain::Map(fields) => {
                let table = lua.create_table_with_capacity(0, fields.len())?;
                for (key, item) in fields {
                    table.raw_set(key, item.into_lua(lua)?)?;
                }
                Value::Table(table)
            }
        })
    }
}

/// What a lane task returns: the values the session resumes with.
pub struct LaneReply(pub Vec<Plain>);

pub(crate) fn reply(values: Vec<Plain>) -> Box<dyn Any + Send> {
    Box::new(LaneReply(values))
}

pub(crate) fn failure(message: impl Into<String>) -> Box<dyn Any + Send> {
    reply(vec![Plain::Nil, Plain::Str(message.into().into_bytes())])
}

/// A lane call made with arguments that make no sense: raised in Lua.
#[derive(Debug, thiserror::Error)]
pub enum LaneMisuse {
    #[error("{0} must be a string")]
    NotAString(&'static str),
    #[error("{call}: cannot bind a {type_name} (nil, boolean, number or string)")]
    Bind {
        call: &'static str,
        type_name: &'static str,
    },
    #[error("db:atomic: expected a list of {{sql, ...}} statements")]
    NotAList,
    #[error("db:atomic: statement #{0} must be a table {{sql, ...}}")]
    NotAStatement(usize),
    #[error("db:atomic: statement #{0} has no sql string")]
    NoSql(usize),
    #[error("db:atomic: statement #{0} is empty")]
    EmptyStatement(usize),
    #[error("lunet.lane.sleep: ms must be a number")]
    NotANumber,
    /// A state or storage call yielded by hand without the object lunet
    /// made for it.
    #[error("{0}: not this runtime's state or storage")]
    NotOurs(&'static str),
    #[error("{0}")]
    Lua(#[from] mlua::Error),
}

/// Why a database call failed (handed back to Lua as `nil, err`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("{path}: {error}")]
    Open {
        path: String,
        error: rusqlite::Error,
    },
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
}

fn string_arg(values: &MultiValue, index: usize, what: &'static str) -> Result<String, LaneMisuse> {
    match values.get(index) {
        Some(Value::String(s)) => Ok(s.to_string_lossy()),
        _ => Err(LaneMisuse::NotAString(what)),
    }
}

fn binds(values: &MultiValue, from: usize, call: &'static str) -> Result<Vec<Plain>, LaneMisuse> {
    values
        .iter()
        .skip(from)
        .map(|value| Plain::scalar(value, call))
        .collect()
}

/// The database a db or storage call runs on: the path the db handle
/// yielded, or the file of the runtime's storage handle.
fn db_path(op: LaneOp, values: &MultiValue) -> Result<String, LaneMisuse> {
    let (_, call) = crate::caps::lane_capability(op);
    match op {
        LaneOp::StorageExec | LaneOp::StorageQuery | LaneOp::StorageAtomic => {
            crate::model::state_store::storage_path(values, call)
        }
        _ => string_arg(values, 0, "db"),
    }
}

/// Builds the task for a lane call from the arguments the session
/// yielded after `(OP.LANE, op)`.
pub fn build_task(op: LaneOp, values: &MultiValue) -> Result<Task, LaneMisuse> {
    // The name of the call, for messages: "db:exec", "storage:exec", ...
    let (_, call) = crate::caps::lane_capability(op);
    Ok(match op {
        LaneOp::StateLoad => crate::model::state_store::load_task(values)?,
        LaneOp::StateSave => crate::model::state_store::save_task(values)?,
        LaneOp::DbOpen => {
            let path = string_arg(values, 0, "lunet.db.open: path")?;
            Box::new(move || match with_db(&path, |_| Ok(())) {
                Ok(()) => reply(vec![Plain::Bool(true)]),
                Err(e) => failure(e.to_string()),
            })
        }
        LaneOp::DbExec | LaneOp::StorageExec => {
            let path = db_path(op, values)?;
            let sql = string_arg(values, 1, sql_what(op))?;
            let params = binds(values, 2, call)?;
            Box::new(move || {
                match with_db(&path, |conn| {
                    let mut statement = conn.prepare_cached(&sql)?;
                    let changes =
                        statement.execute(rusqlite::params_from_iter(params.iter().map(to_sql)))?;
                    Ok((changes as i64, conn.last_insert_rowid()))
                }) {
                    Ok((changes, last)) => reply(vec![Plain::Int(changes), Plain::Int(last)]),
                    Err(e) => failure(e.to_string()),
                }
            })
        }
        LaneOp::DbQuery | LaneOp::StorageQuery => {
            let path = db_path(op, values)?;
            let sql = string_arg(values, 1, sql_what(op))?;
            let params = binds(values, 2, call)?;
            Box::new(
                move || match with_db(&path, |conn| query(conn, &sql, &params)) {
                    Ok(rows) => reply(vec![Plain::List(rows)]),
                    Err(e) => failure(e.to_string()),
                },
            )
        }
        LaneOp::DbAtomic | LaneOp::StorageAtomic => {
            let path = db_path(op, values)?;
            let statements = match values.get(1) {
                Some(Value::Table(list)) => {
                    let mut statements = Vec::new();
                    for (n, item) in list.clone().sequence_values::<Value>().enumerate() {
                        let Ok(Value::Table(item)) = item else {
                            return Err(LaneMisuse::NotAStatement(n + 1));
                        };
                        let mut sql = None;
                        let mut params = Vec::new();
                        for (i, value) in item.sequence_values::<Value>().enumerate() {
                            let value = value?;
                            if i == 0 {
                                match value {
                                    Value::String(s) => sql = Some(s.to_string_lossy()),
                                    _ => return Err(LaneMisuse::NoSql(n + 1)),
                                }
                            } else {
                                params.push(Plain::scalar(&value, call)?);
                            }
                        }
                        let sql = sql.ok_or(LaneMisuse::EmptyStatement(n + 1))?;
                        statements.push((sql, params));
                    }
                    statements
                }
                _ => return Err(LaneMisuse::NotAList),
            };
            Box::new(move || {
                match with_db(&path, |conn| {
                    let transaction = conn.transaction()?;
                    let mut changes = 0i64;
                    for (sql, params) in &statements {
                        let mut statement = transaction.prepare_cached(sql)?;
                        changes += statement
                            .execute(rusqlite::params_from_iter(params.iter().map(to_sql)))?
                            as i64;
                    }
                    transaction.commit()?;
                    Ok(changes)
                }) {
                    Ok(changes) => reply(vec![Plain::Bool(true), Plain::Nil, Plain::Int(changes)]),
                    Err(e) => failure(e.to_string()),
                }
            })
        }
        LaneOp::FsRead => {
            let path = string_arg(values, 0, "lunet.fs.read: path")?;
            Box::new(move || match std::fs::read(&path) {
                Ok(data) => reply(vec![Plain::Str(data)]),
                Err(e) => failure(format!("{path}: {e}")),
            })
        }
        LaneOp::FsWrite => {
            let path = string_arg(values, 0, "lunet.fs.write: path")?;
            let data = match values.get(1) {
                Some(Value::String(s)) => s.as_bytes().to_vec(),
                _ => return Err(LaneMisuse::NotAString("lunet.fs.write: data")),
            };
            Box::new(move || match std::fs::write(&path, data) {
                Ok(()) => reply(vec![Plain::Bool(true)]),
                Err(e) => failure(format!("{path}: {e}")),
            })
        }
        LaneOp::Resolve => {
            let host = string_arg(values, 0, "lunet.resolve: host")?;
            Box::new(move || {
                use std::net::ToSocketAddrs;
                match (host.as_str(), 0u16).to_socket_addrs() {
                    Ok(addrs) => {
                        let mut seen = Vec::new();
                        for addr in addrs {
                            let ip = Plain::Str(addr.ip().to_string().into_bytes());
                            if !seen.contains(&ip) {
                                seen.push(ip);
                            }
                        }
                        reply(vec![Plain::List(seen)])
                    }
                    Err(e) => failure(format!("{host}: {e}")),
                }
            })
        }
        LaneOp::Sleep => {
            let ms = match values.front() {
                Some(Value::Integer(n)) => *n as f64,
                Some(Value::Number(f)) => *f,
                _ => return Err(LaneMisuse::NotANumber),
            };
            let duration = Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(86_400.0));
            Box::new(move || {
                std::thread::sleep(duration);
                reply(vec![Plain::Bool(true)])
            })
        }
    })
}

/// "db:exec: sql", as `string_arg` names what it checks.
fn sql_what(op: LaneOp) -> &'static str {
    match op {
        LaneOp::DbExec => "db:exec: sql",
        LaneOp::DbQuery => "db:query: sql",
        LaneOp::StorageExec => "storage:exec: sql",
        LaneOp::StorageQuery => "storage:query: sql",
        _ => "sql",
    }
}

fn to_sql(plain: &Plain) -> SqlValue {
    match plain {
        Plain::Nil => SqlValue::Null,
        Plain::Bool(b) => SqlValue::Integer(*b as i64),
        Plain::Int(i) => SqlValue::Integer(*i),
        Plain::Float(f) => SqlValue::Real(*f),
        Plain::Str(s) => match std::str::from_utf8(s) {
            Ok(text) => SqlValue::Text(text.to_string()),
            Err(_) => SqlValue::Blob(s.clone()),
        },
        Plain::List(_) | Plain::Map(_) => SqlValue::Null,
    }
}

fn query(conn: &rusqlite::Connection, sql: &str, params: &[Plain]) -> rusqlite::Result<Vec<Plain>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names: Vec<String> = statement
        .column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut rows = statement.query(rusqlite::params_from_iter(params.iter().map(to_sql)))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut fields = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i)? {
                ValueRef::Null => continue,
                ValueRef::Integer(n) => Plain::Int(n),
                ValueRef::Real(f) => Plain::Float(f),
                ValueRef::Text(t) => Plain::Str(t.to_vec()),
                ValueRef::Blob(b) => Plain::Str(b.to_vec()),
            };
            fields.push((name.clone(), value));
        }
        out.push(Plain::Map(fields));
    }
    Ok(out)
}

thread_local! {
    /// One SQLite connection per lane thread per database file.
    static DATABASES: RefCell<HashMap<String, rusqlite::Connection>> = RefCell::new(HashMap::new());
}

pub(crate) fn with_db<R>(
    path: &str,
    f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R>,
) -> Result<R, DbError> {
    DATABASES.with(|databases| {
        let mut databases = databases.borrow_mut();
        if !databases.contains_key(path) {
            let conn = open(path).map_err(|error| DbError::Open {
                path: path.to_string(),
                error,
            })?;
            databases.insert(path.to_string(), conn);
        }
        let conn = databases.get_mut(path).expect("inserted above");
        Ok(f(conn)?)
    })
}

/// WAL with synchronous=NORMAL: a committed transaction survives the
/// process being killed (the OS has the WAL pages); only a power loss can
/// take the last commits. Readers never block the writer.
fn open(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Switching a new file to WAL takes an exclusive lock, and SQLite does
    // not always call the busy handler for it: when several lane threads open
    // the same new file at once, one may get SQLITE_BUSY. Retry for up to the
    // busy timeout (this is the lane: blocking here is what it is for).
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}
