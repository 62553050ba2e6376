//! The life of a connection inside a VM: accepted (or connected), ready,
//! closed by Lua, lingering while its output drains, dropped.

use std::sync::Arc;

use lunet_core::connection::{Connection, Fill};
use lunet_core::{now_ms, Readiness, Runtime, Service};
use mlua::{MultiValue, Value};

use super::sessions::{ResumeWith, Sched, Session, Wait};
use super::{vm, LuaService};
use crate::api::connect_word;
use crate::ids::{ConnectionId, SessionId, TimerKey};
use crate::read::{self, ReadOutcome, Taken};
use crate::state::{ConnEntry, ConnectionPhase, VmState};

impl LuaService {
    pub(super) fn on_accept(
        &mut self,
        service: &Arc<Service>,
        listener: u32,
        accepted: lunet_core::Accepted,
    ) {
        let lunet_core::Accepted {
            stream,
            peer,
            count,
        } = accepted;
        let runtime = &self.runtime;
        let registered = vm(|state| {
            let cid = state.conns.insert(ConnEntry::new(
                Connection::new(stream),
                ConnectionPhase::Open,
                Some(peer),
                Some(count),
                0,
            ));
            let token = lunet_core::reactor::token(service.index(), cid.index());
            let entry = state.conns.get_mut(cid).expect("just inserted");
            match runtime.registry().register(
                &mut entry.conn.stream,
                token,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            ) {
                Ok(()) => Ok(cid),
                Err(e) => {
                    state.conns.remove(cid);
                    Err(e)
                }
            }
        });
        let cid = match registered {
            Ok(cid) => cid,
            Err(e) => {
                tracing::error!(service = %self.name, "cannot register connection from {peer}: {e}");
                return;
            }
        };
        let handler = self.run_handler.clone();
        match self.new_session(&handler, Some(cid)) {
            Some(sid) => {
                let args = MultiValue::from_vec(vec![
                    Value::Integer(listener as i64),
                    Value::Integer(cid.to_raw() as i64),
                ]);
                self.sched.ready.push_back((sid, ResumeWith::Args(args)));
            }
            None => {
                let (sched, runtime) = (&mut self.sched, &self.runtime);
                vm(|state| close_conn(state, sched, runtime, service, cid));
            }
        }
    }

    pub(super) fn on_io(&mut self, service: &Arc<Service>, slot: u32, readiness: Readiness) {
        let (sched, runtime, bytes) = (&mut self.sched, &self.runtime, &mut self.bytes);
        let read = vm(|state| -> Option<(SessionId, Taken)> {
            let cid = state.conns.id_at(slot)?;
            let high_water = state.settings.high_water;
            let entry = state.conns.get_mut(cid)?;
            if readiness.is_readable() {
                entry.conn.readable = true;
            }
            if readiness.is_hangup() {
                entry.conn.hangup = true;
            }
            if readiness.is_writable() {
                entry.conn.writable = true;
            }
            match entry.phase {
                ConnectionPhase::Closing => {
                    advance_close(state, runtime, service, cid);
                    None
                }
                ConnectionPhase::Pooled => {
                    if readiness.is_readable() || readiness.is_hangup() {
                        crate::pool::on_readiness(state, cid);
                    }
                    None
                }
                ConnectionPhase::Connecting => {
                    if !readiness.is_writable() {
                        return None;
                    }
                    let result = match entry.conn.stream.take_error() {
                        Ok(Some(e)) | Err(e) => Err(e),
                        Ok(None) => match entry.conn.stream.peer_addr() {
                            Ok(_) => Ok(()),
                            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => return None,
                            Err(e) => Err(e),
                        },
                    };
                    let writers = std::mem::take(&mut entry.writers);
                    let failure = match result {
                        Ok(()) => {
                            entry.phase = ConnectionPhase::Open;
                            None
                        }
                        Err(e) => {
                            entry.conn.failed = true;
                            Some(connect_word(&e).unwrap_or("connect failed"))
                        }
                    };
                    for sid in writers {
                        let reply = failure.map_or(ResumeWith::True, ResumeWith::Error);
                        sched.wake(state, sid, reply);
                    }
                    None
                }
                ConnectionPhase::Open => {
                    entry.conn.advance_handshake();
                    if entry.conn.writable && entry.conn.wants_flush() {
                        let _ = entry.conn.flush();
                    }
                    if !entry.writers.is_empty()
                        && (entry.conn.failed || entry.conn.output.len() <= high_water / 2)
                    {
                        let failed = entry.conn.failed;
                        for sid in std::mem::take(&mut entry.writers) {
                            let reply = if failed {
                                ResumeWith::Error("closed")
                            } else {
                                ResumeWith::True
                            };
                            sched.wake(state, sid, reply);
                        }
                    }
                    let entry = state.conns.get_mut(cid)?;
                    let sid = entry.reader?;
                    let Some(Session {
                        wait: Wait::Read(_, request),
                        ..
                    }) = sched.sessions.get(sid)
                    else {
                        entry.reader = None;
                        return None;
                    };
                    let outcome = read::try_read(entry, request);
                    if matches!(outcome, ReadOutcome::Wait) {
                        return None;
                    }
                    let taken = read::settle(entry, outcome, bytes);
                    sched.unlink(state, sid);
                    Some((sid, taken))
                }
            }
        });
        if let Some((sid, taken)) = read {
            self.ready_with_read(sid, taken);
        }
    }

    /// A connection's deadline: a closing connection past its linger, or a
    /// pooled one past its idle time, is dropped; one whose TLS handshake
    /// is past its deadline fails, and whoever waits on it is woken with
    /// the error.
    pub(super) fn on_connection_timer(
        &mut self,
        service: &Arc<Service>,
        cid: ConnectionId,
        now: u64,
    ) {
        let expired_handshake = vm(|state| {
            let entry = state.conns.get_mut(cid)?;
            if matches!(
                entry.phase,
                ConnectionPhase::Closing | ConnectionPhase::Pooled
            ) && entry.linger_deadline.is_some_and(|d| d <= now)
            {
                drop_conn(state, cid);
                return None;
            }
            entry.conn.expire_handshake(now).then_some(())
        });
        if expired_handshake.is_some() {
            // As an event on a failed socket: waiters get its error.
            self.on_io(service, cid.index(), Readiness::empty());
        }
    }

    /// Queues a session whose read finished, its answer in `self.bytes`.
    pub(super) fn ready_with_read(&mut self, sid: SessionId, taken: Taken) {
        let reply = match read::answer(&self.lua, taken, &self.bytes) {
            Ok(answer) => ResumeWith::Read(answer),
            Err(_) => ResumeWith::Error("no memory"),
        };
        self.sched.ready.push_back((sid, reply));
        if self.bytes.capacity() > read::KEEP_BYTES {
            self.bytes = Vec::new();
        }
    }

    /// The service starts draining (a reload retired it, or the server
    /// stops), once. A service with `lunet.on_shutdown` hooks drains its
    /// own connections: each hook runs as a session of its own, and its
    /// reads are left alone (an HTTP server answers the next request with
    /// `Connection: close`). Without hooks, reads of accepted connections
    /// that wait on an empty buffer end with "closed", now and later.
    pub(super) fn on_shutdown(&mut self) {
        let sched = &mut self.sched;
        let hooks = vm(|state| {
            if std::mem::replace(&mut state.draining, true) {
                return Vec::new();
            }
            if !state.shutdown_hooks.is_empty() {
                return std::mem::take(&mut state.shutdown_hooks);
            }
            state.shutting_down = true;
            for cid in state.conns.ids() {
                let Some(entry) = state.conns.get(cid) else {
                    continue;
                };
                if entry.count.is_some() && entry.conn.input.is_empty() {
                    if let Some(sid) = entry.reader {
                        sched.wake(state, sid, ResumeWith::Error("closed"));
                    }
                }
            }
            Vec::new()
        });
        for hook in hooks {
            if let Some(sid) = self.new_session(&hook, None) {
                self.sched.ready.push_back((sid, ResumeWith::Nothing));
            }
        }
    }
}

/// Closes a connection: wakes whoever waits on it, then flushes and drains
/// it (see `advance_close`).
pub(super) fn close_conn(
    state: &mut VmState,
    sched: &mut Sched,
    runtime: &Runtime,
    service: &Arc<Service>,
    cid: ConnectionId,
) {
    let Some(entry) = state.conns.get_mut(cid) else {
        return;
    };
    entry.phase = ConnectionPhase::Closing;
    let mut waiters = std::mem::take(&mut entry.writers);
    waiters.extend(entry.reader.take());
    for sid in waiters {
        sched.wake(state, sid, ResumeWith::Error("closed"));
    }
    advance_close(state, runtime, service, cid);
}

/// A closing connection: flush what is left; if the peer sent data we
/// never read, half-close and discard input until it closes too (a plain
/// close with unread input sends RST, which can destroy our last answer
/// before the peer reads it); drop it at the linger deadline regardless.
pub(super) fn advance_close(
    state: &mut VmState,
    runtime: &Runtime,
    service: &Arc<Service>,
    cid: ConnectionId,
) {
    let linger_ms = state.settings.linger_ms;
    let Some(entry) = state.conns.get_mut(cid) else {
        return;
    };
    let mut done = entry.conn.failed;
    if !done {
        entry.conn.close_output();
        let _ = entry.conn.flush();
        done = entry.conn.failed;
    }
    if !done && !entry.conn.wants_flush() {
        if !entry.draining {
            entry.conn.input.clear();
            let unread = !entry.conn.eof && matches!(entry.conn.fill(64 * 1024), Fill::Data(_));
            if unread {
                let _ = entry.conn.stream.shutdown(std::net::Shutdown::Write);
                entry.draining = true;
            } else {
                done = true;
            }
        }
        if entry.draining {
            // Bounded per call; the linger deadline bounds the whole.
            for _ in 0..16 {
                entry.conn.input.clear();
                match entry.conn.fill(64 * 1024) {
                    Fill::Data(_) => continue,
                    Fill::WouldBlock => break,
                    Fill::Closed | Fill::Reset => {
                        done = true;
                        break;
                    }
                }
            }
            entry.conn.input.clear();
        }
    }
    if done {
        drop_conn(state, cid);
        return;
    }
    if entry.linger_deadline.is_none() {
        let deadline = now_ms() + linger_ms;
        entry.linger_deadline = Some(deadline);
        runtime.add_timer(service, deadline, TimerKey::Connection(cid).to_raw());
    }
}

pub(super) fn drop_conn(state: &mut VmState, cid: ConnectionId) {
    // Dropping the entry closes the socket and counts it down.
    state.conns.remove(cid);
}
