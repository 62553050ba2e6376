//! The protocol between lunet's two halves, as types. Each set of codes is
//! one Rust enum here and nowhere else:
//!
//! - [`Op`]: what a session yields to the scheduler when it must wait
//!   (`coroutine.yield(OP.READ, conn)` in `prelude.lua`), decoded by
//!   [`Yielded::decode`];
//! - [`ReadKind`]: what a read waits for (`core.read(conn, READ.LINE, max)`);
//! - [`LaneOp`]: which blocking task a lane call runs;
//! - [`MessageKind`]: the meaning of a `lunet_core::Message` between Lua
//!   services (the `kind` byte).
//!
//! The Lua side never spells a number: [`install`] puts the first three on
//! the `core` table handed to `prelude.lua` when a VM is built
//! (`core.OP.READ`, `core.READ.LINE`, `core.LANE.DB_EXEC`).

use mlua::{Lua, MultiValue, Table, Thread, Value};

use crate::ids::{CallToken, ConnectionId};

/// Declares a set of codes: a `u8` enum, its Lua table name and the name of
/// each code in that table.
macro_rules! codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident in $table:literal {
            $($(#[$variant_meta:meta])* $variant:ident = $value:literal => $lua:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $value,)*
        }

        impl $name {
            /// The name of the table of `core` that carries these codes.
            pub const TABLE: &'static str = $table;
            /// Every code with its name in that table.
            pub const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $lua),)*];

            pub fn code(self) -> u8 {
                self as u8
            }

            pub fn from_code(code: i64) -> Option<$name> {
                match code {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// What a session yields for (the first value of its yield).
    pub enum Op in "OP" {
        /// `(READ, conn)`: the read the fast path parked (see `pending_read`).
        Read = 1 => "READ",
        /// `(WRITE, conn)`: wait until the output drains below half the
        /// high-water mark.
        Write = 2 => "WRITE",
        /// `(SLEEP, ms)`.
        Sleep = 3 => "SLEEP",
        /// `(CONNECT, conn)`: wait for an outbound connect to finish.
        Connect = 4 => "CONNECT",
        /// `(LANE, lane_op, args...)`: run a blocking task on the lane.
        Lane = 5 => "LANE",
        /// `(CALL, token [, ms])`: wait for the answer to a call (or a
        /// spawn), at most `ms` if given (then resumed with `nil, "timeout"`).
        Call = 6 => "CALL",
        /// `(WAIT, co [, ms])`: `lunet.wait()` until `lunet.wakeup(co)`, at
        /// most `ms` if given (then resumed with `nil, "timeout"`).
        Wait = 7 => "WAIT",
        /// `(EXIT)`: `lunet.exit()`; the session ends here.
        Exit = 8 => "EXIT",
    }
}

codes! {
    /// What a read waits for.
    pub enum ReadKind in "READ" {
        Line = 1 => "LINE",
        Exact = 2 => "EXACT",
        Until = 3 => "UNTIL",
        Some = 4 => "SOME",
        /// A RESP command (`sock:readresp`).
        Command = 5 => "COMMAND",
        /// A RESP reply (`sock:readreply`).
        Reply = 6 => "REPLY",
        /// The end of the TLS handshake (`sock:handshake`).
        Handshake = 7 => "HANDSHAKE",
    }
}

codes! {
    /// The blocking tasks of the lane (`lane.rs`).
    pub enum LaneOp in "LANE" {
        DbOpen = 1 => "DB_OPEN",
        DbExec = 2 => "DB_EXEC",
        DbQuery = 3 => "DB_QUERY",
        DbAtomic = 4 => "DB_ATOMIC",
        FsRead = 5 => "FS_READ",
        FsWrite = 6 => "FS_WRITE",
        Resolve = 7 => "RESOLVE",
        Sleep = 8 => "SLEEP",
        /// The runtime model (`model/state_store.rs`): a runtime's saved
        /// state, read at its start and written by `state:save()`.
        StateLoad = 9 => "STATE_LOAD",
        StateSave = 10 => "STATE_SAVE",
        /// `lunet.storage()`'s methods: as the db ones, on the runtime's
        /// own database only.
        StorageExec = 11 => "STORAGE_EXEC",
        StorageQuery = 12 => "STORAGE_QUERY",
        StorageAtomic = 13 => "STORAGE_ATOMIC",
    }
}

codes! {
    /// What a message to a Lua service means.
    pub enum MessageKind in "MESSAGE" {
        /// Run the main chunk (payload: its arguments; a session other than
        /// 0 waits for it to return, as `lunet.spawn` does).
        Start = 1 => "START",
        /// Sent to itself: ready sessions are left over after a turn's
        /// budget, so the service gave its worker up for a while.
        Continue = 2 => "CONTINUE",
        /// `lunet.send`.
        Send = 10 => "SEND",
        /// `lunet.call`: answer with `Response` or `Error` to `session`.
        Call = 11 => "CALL",
        /// The answer to a call: its values.
        Response = 12 => "RESPONSE",
        /// A call failed: one string, raised at the caller.
        Error = 13 => "ERROR",
        /// `lunet.kill`: exit now.
        Kill = 14 => "KILL",
        /// From the console: run a full garbage collection, answer with
        /// `Collected` to `session`.
        Collect = 15 => "COLLECT",
        /// The answer to `Collect`: the VM's bytes before and after, two
        /// little-endian u64 (see [`collected_payload`]).
        Collected = 16 => "COLLECTED",
        /// The runtime model (`model/`). `lunet.send(h, sub, ...)`: run a
        /// Sub; the payload is the Sub's id then its arguments.
        RunSub = 17 => "RUN_SUB",
        /// `lunet.call(h, sub, ...)`: as `RunSub`, answered as `Call`.
        CallSub = 18 => "CALL_SUB",
        /// An event fired where this VM attached (`session`: the
        /// attachment's id; `source`: the runtime that fired it).
        Fired = 19 => "FIRED",
        /// `lunet.attach(h, event, fn)`: attach the sender to an event of
        /// the receiver (payload: the attachment's id, u64 LE, then the
        /// event's name); answered as `Call`.
        Attach = 20 => "ATTACH",
        /// From the console: load a module's new code (payload: its name);
        /// answered as `Call`.
        ReloadModule = 21 => "RELOAD_MODULE",
    }
}

impl MessageKind {
    pub fn from_byte(kind: u8) -> Option<MessageKind> {
        MessageKind::from_code(kind as i64)
    }

    /// Whether the sender waits for a `Response` or an `Error`
    /// (`session` names its wait). `Start` waits when its session is not 0.
    pub fn expects_answer(self) -> bool {
        matches!(
            self,
            MessageKind::Call
                | MessageKind::CallSub
                | MessageKind::Attach
                | MessageKind::ReloadModule
        )
    }
}

/// The payload of a `Collected` answer.
pub fn collected_payload(before: usize, after: usize) -> Vec<u8> {
    let mut payload = Vec::with_capacity(16);
    payload.extend_from_slice(&(before as u64).to_le_bytes());
    payload.extend_from_slice(&(after as u64).to_le_bytes());
    payload
}

/// The bytes before and after of a `Collected` payload.
pub fn parse_collected(payload: &[u8]) -> Option<(u64, u64)> {
    let before = payload.get(..8)?.try_into().ok()?;
    let after = payload.get(8..16)?.try_into().ok()?;
    Some((u64::from_le_bytes(before), u64::from_le_bytes(after)))
}

/// A table `{NAME = code, ...}` of one set of codes.
fn code_table<T: Copy>(lua: &Lua, all: &[(T, &str)], code: fn(T) -> u8) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(0, all.len())?;
    for &(value, name) in all {
        table.raw_set(name, code(value))?;
    }
    Ok(table)
}

/// Puts the codes the Lua side uses on `core`.
pub fn install(lua: &Lua, core: &Table) -> mlua::Result<()> {
    core.raw_set(Op::TABLE, code_table(lua, Op::ALL, Op::code)?)?;
    core.raw_set(
        ReadKind::TABLE,
        code_table(lua, ReadKind::ALL, ReadKind::code)?,
    )?;
    core.raw_set(LaneOp::TABLE, code_table(lua, LaneOp::ALL, LaneOp::code)?)?;
    Ok(())
}

/// What a session yielded, decoded: the values after the op, typed.
pub enum Yielded {
    Read {
        conn: ConnectionId,
    },
    Write {
        conn: ConnectionId,
    },
    Connect {
        conn: ConnectionId,
    },
    /// Milliseconds; `NaN` or `<= 0` means "just let others run".
    Sleep {
        ms: f64,
    },
    Lane {
        op: LaneOp,
        args: MultiValue,
    },
    /// `timeout_ms`: `None` waits as long as it takes.
    Call {
        token: CallToken,
        timeout_ms: Option<u64>,
    },
    /// The coroutine that waits (a user coroutine inside the session), or
    /// `None` for the session's own; `timeout_ms` as for a call.
    Wait {
        coroutine: Option<Thread>,
        timeout_ms: Option<u64>,
    },
    Exit,
}

/// Milliseconds of a wait, rounded up; `None` for no number, NaN or `<= 0`.
fn milliseconds(value: Option<Value>) -> Option<u64> {
    let ms = match value? {
        Value::Integer(n) => n as f64,
        Value::Number(f) => f,
        _ => return None,
    };
    (ms > 0.0).then(|| ms.ceil().min(1e15) as u64)
}

fn integer(value: Option<Value>) -> Option<i64> {
    match value? {
        Value::Integer(n) => Some(n),
        Value::Number(f) if f.fract() == 0.0 => Some(f as i64),
        _ => None,
    }
}

impl Yielded {
    /// `None` when the values are not a lunet op: the session yielded
    /// outside lunet's API (a bare `coroutine.yield`).
    pub fn decode(mut values: MultiValue) -> Option<Yielded> {
        let op = Op::from_code(integer(values.pop_front())?)?;
        let mut id = || integer(values.pop_front()).map(|id| id as u64);
        Some(match op {
            Op::Read => Yielded::Read {
                conn: ConnectionId::from_raw(id()?),
            },
            Op::Write => Yielded::Write {
                conn: ConnectionId::from_raw(id()?),
            },
            Op::Connect => Yielded::Connect {
                conn: ConnectionId::from_raw(id()?),
            },
            Op::Call => Yielded::Call {
                token: CallToken::from_raw(id()?),
                timeout_ms: milliseconds(values.pop_front()),
            },
            Op::Sleep => Yielded::Sleep {
                ms: match values.pop_front() {
                    Some(Value::Integer(n)) => n as f64,
                    Some(Value::Number(f)) => f,
                    _ => f64::NAN,
                },
            },
            Op::Lane => Yielded::Lane {
                op: LaneOp::from_code(integer(values.pop_front())?)?,
                args: values,
            },
            Op::Wait => Yielded::Wait {
                coroutine: match values.pop_front() {
                    Some(Value::Thread(co)) => Some(co),
                    _ => None,
                },
                timeout_ms: milliseconds(values.pop_front()),
            },
            Op::Exit => Yielded::Exit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_reach_lua() {
        for &(op, _) in Op::ALL {
            assert_eq!(Op::from_code(op.code() as i64), Some(op));
        }
        for &(kind, _) in MessageKind::ALL {
            assert_eq!(MessageKind::from_byte(kind.code()), Some(kind));
        }
        assert_eq!(Op::from_code(0), None);
        let lua = Lua::new();
        let core = lua.create_table().unwrap();
        install(&lua, &core).unwrap();
        let read: i64 = lua
            .load("local core = ... return core.OP.READ * 100 + core.READ.UNTIL")
            .call(core)
            .unwrap();
        assert_eq!(read, Op::Read as i64 * 100 + ReadKind::Until as i64);
    }

    #[test]
    fn yields_decode_to_typed_ops() {
        let lua = Lua::new();
        let values: MultiValue = lua.load("return 5, 2, 'path', 'sql', 1").eval().unwrap();
        match Yielded::decode(values) {
            Some(Yielded::Lane { op, args }) => {
                assert_eq!(op, LaneOp::DbExec);
                assert_eq!(args.len(), 3);
            }
            _ => panic!("not a lane op"),
        }
        let foreign: MultiValue = lua.load("return 'hello', 1").eval().unwrap();
        assert!(Yielded::decode(foreign).is_none());
        let bare: MultiValue = lua.load("return 1").eval().unwrap();
        assert!(Yielded::decode(bare).is_none());
    }

    #[test]
    fn waits_decode_their_optional_timeouts() {
        let lua = Lua::new();
        let decode = |code: &str| Yielded::decode(lua.load(code).eval().unwrap());
        match decode("return 6, 42, 2.5") {
            Some(Yielded::Call { token, timeout_ms }) => {
                assert_eq!(token.to_raw(), 42);
                assert_eq!(timeout_ms, Some(3));
            }
            _ => panic!("not a call"),
        }
        for no_timeout in [
            "return 6, 42",
            "return 6, 42, 0",
            "return 6, 42, -1",
            "return 6, 42, 0/0",
        ] {
            match decode(no_timeout) {
                Some(Yielded::Call { timeout_ms, .. }) => assert_eq!(timeout_ms, None),
                _ => panic!("not a call: {no_timeout}"),
            }
        }
        match decode("return 7, coroutine.running(), 10") {
            Some(Yielded::Wait {
                coroutine: Some(_),
                timeout_ms: Some(10),
            }) => {}
            _ => panic!("not a wait with a timeout"),
        }
    }

    #[test]
    fn collected_payload_round_trips() {
        let payload = collected_payload(1 << 40, 7);
        assert_eq!(parse_collected(&payload), Some((1 << 40, 7)));
        assert_eq!(parse_collected(&payload[..15]), None);
    }
}
