//! The ids of a VM, typed, and every bit packing they use, in one place.
//!
//! - A [`SlotId`] names an entry of a [`Slab`](crate::slab::Slab):
//!   `generation << 32 | index`. The generation (30 bits, so ids stay
//!   below 2^62 and fit a Lua integer with room for a tag) changes when the
//!   index is reused, so a stale id misses instead of finding a newcomer.
//! - [`SessionId`] and [`ConnectionId`] are slot ids of the session and
//!   connection slabs. A socket object in Lua holds its connection's id as
//!   an integer; the reactor's token carries only the index.
//! - A [`CallToken`] names one call a session made: `sequence << 32 |
//!   session index`. The answer finds its session by the index, and the
//!   whole token must match what the session waits for, so an answer that
//!   comes after its caller stopped waiting never wakes the wrong wait.
//! - A [`TimerKey`] is what a VM gives the timer wheel: `session << 1` for
//!   a session's deadline, `connection << 1 | 1` for a closing connection's
//!   linger deadline.

/// Generations wrap within 30 bits.
const GENERATION_MASK: u32 = 0x3FFF_FFFF;

/// An entry of a slab: its index and the generation of that index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotId(u64);

impl SlotId {
    pub fn new(index: u32, generation: u32) -> SlotId {
        SlotId(((generation & GENERATION_MASK) as u64) << 32 | index as u64)
    }

    pub fn index(self) -> u32 {
        self.0 as u32
    }

    pub fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The generation after `generation`, as a reused index gets it.
    pub fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & GENERATION_MASK
    }
}

/// An id kept in a slab.
pub trait SlabKey: Copy {
    fn from_slot(slot: SlotId) -> Self;
    fn slot(self) -> SlotId;
}

macro_rules! slab_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(SlotId);

        impl SlabKey for $name {
            fn from_slot(slot: SlotId) -> Self {
                $name(slot)
            }
            fn slot(self) -> SlotId {
                self.0
            }
        }

        impl $name {
            /// The slab index (what the reactor's token carries).
            pub fn index(self) -> u32 {
                self.0.index()
            }

            /// The id as a Lua integer (or a lane ticket).
            pub fn to_raw(self) -> u64 {
                self.0 .0
            }

            pub fn from_raw(raw: u64) -> $name {
                $name(SlotId(raw))
            }

            /// The id a Lua integer holds (callbacks take `i64`: mlua
            /// reads it straight off the stack).
            pub fn from_lua_integer(id: i64) -> $name {
                $name::from_raw(id as u64)
            }
        }

        impl mlua::IntoLua for $name {
            fn into_lua(self, _: &mlua::Lua) -> mlua::Result<mlua::Value> {
                Ok(mlua::Value::Integer(self.to_raw() as i64))
            }
        }
    };
}

slab_id! {
    /// A session (coroutine) of a VM.
    SessionId
}

slab_id! {
    /// A connection of a VM (what a socket object holds).
    ConnectionId
}

/// One call (or spawn) a session made, as it travels in
/// `Message::session` and comes back with the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallToken(u64);

impl CallToken {
    pub fn new(session: SessionId, sequence: u32) -> CallToken {
        CallToken(((sequence & GENERATION_MASK) as u64) << 32 | session.index() as u64)
    }

    /// The slab index of the session that made the call.
    pub fn session_index(self) -> u32 {
        self.0 as u32
    }

    pub fn to_raw(self) -> u64 {
        self.0
    }

    pub fn from_raw(raw: u64) -> CallToken {
        CallToken(raw)
    }
}

impl mlua::IntoLua for CallToken {
    fn into_lua(self, _: &mlua::Lua) -> mlua::Result<mlua::Value> {
        Ok(mlua::Value::Integer(self.0 as i64))
    }
}

/// What a VM's timer in the wheel is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKey {
    /// A session's deadline (a timeout or a sleep).
    Session(SessionId),
    /// A connection's deadline: the linger of a closing connection, or the
    /// end of its TLS handshake.
    Connection(ConnectionId),
}

impl TimerKey {
    pub fn to_raw(self) -> u64 {
        match self {
            TimerKey::Session(session) => session.to_raw() << 1,
            TimerKey::Connection(connection) => connection.to_raw() << 1 | 1,
        }
    }

    pub fn from_raw(raw: u64) -> TimerKey {
        if raw & 1 == 1 {
            TimerKey::Connection(ConnectionId::from_raw(raw >> 1))
        } else {
            TimerKey::Session(SessionId::from_raw(raw >> 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packings_round_trip() {
        let session = SessionId::from_slot(SlotId::new(7, GENERATION_MASK));
        let connection = ConnectionId::from_slot(SlotId::new(u32::MAX, 3));
        for key in [TimerKey::Session(session), TimerKey::Connection(connection)] {
            assert_eq!(TimerKey::from_raw(key.to_raw()), key);
        }
        // Ids fit a Lua integer with the timer tag.
        assert!(session.to_raw() << 1 < i64::MAX as u64);
        let token = CallToken::new(session, u32::MAX);
        assert_eq!(token.session_index(), 7);
        assert_ne!(token, CallToken::new(session, 1));
        assert_eq!(SlotId::next_generation(GENERATION_MASK), 0);
    }
}
