//! How the monitor stops a Lua slice that runs too long, without a hook in
//! steady state (a permanent count hook makes Lua 5.4 ~2x slower:
//! `shared/research/mlua.md`).
//!
//! Protocol (the trick `lua.c` uses for Ctrl-C):
//! 1. Around every resume the worker publishes the running coroutine's
//!    `lua_State` in `running` (`enter`) and takes it back (`leave`). It
//!    also notes which session runs: the `lunet` callbacks that need to
//!    know who calls (`lunet.call`, `lunet.response`) read it here, with
//!    no extra access to the VM's state per resume.
//! 2. The monitor thread, finding the slice stuck, claims the slot
//!    (`state` RUNNING -> BUSY, so the worker cannot leave meanwhile and the
//!    pointer stays valid), sets `action` and installs a count hook with
//!    `lua_sethook` (which Lua documents as safe to call asynchronously),
//!    then releases the slot.
//! 3. The hook runs on the worker thread at the next instruction: WARN logs
//!    a traceback; KILL makes the coroutine yield. A yield cannot be caught
//!    by `pcall`, so `while true do pcall(...) end` stops too; the scheduler
//!    sees the kill flag and ends that session with an error. The hook
//!    removes itself either way.
//! 4. The slice may end before the hook runs (it yielded or returned just
//!    after the monitor looked). `leave` then removes the hook from the
//!    coroutine it was set on and clears the action, on the worker, so a
//!    warning or a kill meant for one slice never lands in the next one
//!    that runs on that coroutine or that thread.

use std::cell::Cell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use lunet_core::{Interrupt, Service};
use mlua::ffi;
use mlua::Thread;

use crate::ids::SessionId;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const BUSY: u8 = 2;

const ACTION_NONE: u8 = 0;
const ACTION_WARN: u8 = 1;
const ACTION_KILL: u8 = 2;

pub fn killed_message() -> String {
    "the slice ran longer than --slice-kill and was interrupted".to_string()
}

thread_local! {
    /// The interrupt slot of the service this worker thread is running.
    static CURRENT: Cell<*const LuaInterrupt> = const { Cell::new(std::ptr::null()) };
}

pub struct LuaInterrupt {
    state: AtomicU8,
    running: AtomicPtr<ffi::lua_State>,
    action: AtomicU8,
    killed: AtomicBool,
    /// The monitor installed the hook during this slice (step 4).
    hooked: AtomicBool,
    /// The session being resumed, or the last one (step 1).
    session: AtomicU64,
    label: Mutex<String>,
}

impl LuaInterrupt {
    pub fn new() -> LuaInterrupt {
        LuaInterrupt {
            state: AtomicU8::new(IDLE),
            running: AtomicPtr::new(std::ptr::null_mut()),
            action: AtomicU8::new(ACTION_NONE),
            killed: AtomicBool::new(false),
            hooked: AtomicBool::new(false),
            session: AtomicU64::new(0),
            label: Mutex::new(String::new()),
        }
    }

    pub fn set_name(&self, name: &str, handle: u64) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = format!("{name} (:{handle})");
    }

    /// Step 1: the worker is about to resume `thread`, session `session`.
    #[inline]
    pub fn enter(self: &Arc<Self>, thread: &Thread, session: SessionId) {
        CURRENT.with(|current| current.set(Arc::as_ptr(self)));
        // Only the worker running this VM writes or reads it.
        self.session.store(session.to_raw(), Ordering::Relaxed);
        self.running.store(thread.state(), Ordering::Relaxed);
        self.state.store(RUNNING, Ordering::Release);
    }

    /// The resume returned; true if the monitor killed that slice.
    #[inline]
    pub fn leave(&self) -> bool {
        while self
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The monitor holds the slot for the few instructions of lua_sethook.
            std::hint::spin_loop();
        }
        let running = self.running.swap(std::ptr::null_mut(), Ordering::Relaxed);
        if self.hooked.swap(false, Ordering::Relaxed) {
            self.unhook(running);
        }
        if self.killed.load(Ordering::Relaxed) {
            self.killed.store(false, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The session being resumed now (or the last one resumed).
    #[inline]
    pub fn session(&self) -> SessionId {
        SessionId::from_raw(self.session.load(Ordering::Relaxed))
    }

    /// Step 4: the slice is over and the monitor can no longer install
    /// (the slot is IDLE); whatever the hook was meant for is void.
    #[cold]
    #[inline(never)]
    fn unhook(&self, running: *mut ffi::lua_State) {
        self.action.store(ACTION_NONE, Ordering::SeqCst);
        if !running.is_null() {
            // SAFETY: `running` is the coroutine of the session that just
            // left, still referenced by that session; this is the worker
            // thread that runs its VM, and no Lua code runs meanwhile.
            unsafe { ffi::lua_sethook(running, None, 0, 0) };
        }
    }

    /// Step 2, on the monitor thread.
    fn install(&self, action: u8) {
        if self
            .state
            .compare_exchange(RUNNING, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // the slice ended meanwhile
        }
        let state = self.running.load(Ordering::Relaxed);
        if !state.is_null() {
            self.action.store(action, Ordering::SeqCst);
            self.hooked.store(true, Ordering::Relaxed);
            // SAFETY: `state` is the coroutine the worker is running; while
            // we hold BUSY the worker cannot return from `leave`, so the
            // coroutine (referenced by its session) stays alive. lua_sethook
            // is documented as safe to call from another thread/signal.
            unsafe { ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, 1) };
        }
        self.state.store(RUNNING, Ordering::Release);
    }
}

impl Default for LuaInterrupt {
    fn default() -> Self {
        Self::new()
    }
}

impl Interrupt for LuaInterrupt {
    fn warn(&self, _service: &Service, running_ms: u64) {
        tracing::warn!(
            "{}: a slice has run for {running_ms} ms (traceback follows when it reaches the next instruction)",
            self.label.lock().unwrap_or_else(|e| e.into_inner())
        );
        self.install(ACTION_WARN);
    }

    fn kill(&self, _service: &Service, running_ms: u64) {
        tracing::error!(
            "{}: a slice has run for {running_ms} ms: interrupting it",
            self.label.lock().unwrap_or_else(|e| e.into_inner())
        );
        self.install(ACTION_KILL);
    }
}

/// Step 3, on the worker thread, inside the running coroutine.
unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    // SAFETY: called by Lua with the running state; every call below is a
    // plain Lua API call on that state from its own thread.
    unsafe {
        ffi::lua_sethook(state, None, 0, 0);
        let slot = CURRENT.with(|current| current.get());
        if slot.is_null() {
            return;
        }
        let slot = &*slot;
        match slot.action.swap(ACTION_NONE, Ordering::SeqCst) {
            ACTION_WARN => {
                ffi::luaL_traceback(state, state, std::ptr::null(), 0);
                let text = ffi::lua_tolstring(state, -1, std::ptr::null_mut());
                let text = if text.is_null() {
                    String::from("(no traceback)")
                } else {
                    CStr::from_ptr(text).to_string_lossy().into_owned()
                };
                ffi::lua_pop(state, 1);
                tracing::warn!(
                    "{}: long slice is here: {text}",
                    slot.label.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
            ACTION_KILL => {
                if ffi::lua_isyieldable(state) != 0 {
                    slot.killed.store(true, Ordering::SeqCst);
                    ffi::lua_yield(state, 0);
                } else {
                    // Inside a C boundary: try again at the next instruction
                    // that can yield.
                    slot.action.store(ACTION_KILL, Ordering::SeqCst);
                    ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, 1);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    /// Runs one slice of `thread` as the scheduler does; true if killed.
    fn slice(interrupt: &Arc<LuaInterrupt>, thread: &Thread) -> (bool, mlua::Result<i64>) {
        interrupt.enter(thread, SessionId::from_raw(1));
        let result = thread.resume::<i64>(());
        (interrupt.leave(), result)
    }

    #[test]
    fn an_interruption_meant_for_one_slice_never_lands_in_the_next() {
        let lua = Lua::new();
        let body = lua.load("return 6 * 7").into_function().unwrap();
        for action in [ACTION_KILL, ACTION_WARN] {
            let interrupt = Arc::new(LuaInterrupt::new());
            let pooled = lua.create_thread(body.clone()).unwrap();
            // The monitor finds a slice stuck and installs its hook, and the
            // slice ends before the hook runs.
            interrupt.enter(&pooled, SessionId::from_raw(1));
            interrupt.install(action);
            assert!(!interrupt.leave(), "the slice never ran: it was not killed");
            assert_eq!(interrupt.action.load(Ordering::SeqCst), ACTION_NONE);
            // The next slices, on the same coroutine and on another one.
            let other = lua.create_thread(body.clone()).unwrap();
            for thread in [&pooled, &other] {
                let (killed, result) = slice(&interrupt, thread);
                assert!(!killed, "a kill meant for the slice before landed here");
                assert_eq!(result.unwrap(), 42);
            }
        }
    }

    #[test]
    fn a_kill_stops_the_slice_it_was_meant_for() {
        let lua = Lua::new();
        let interrupt = Arc::new(LuaInterrupt::new());
        let spin = lua
            .load("local n = 0 while true do n = n + 1 end")
            .into_function()
            .unwrap();
        let thread = lua.create_thread(spin).unwrap();
        interrupt.enter(&thread, SessionId::from_raw(1));
        interrupt.install(ACTION_KILL);
        // What the worker does next: run the slice, which the hook stops.
        let result = thread.resume::<()>(());
        assert!(interrupt.leave(), "the slice was not interrupted");
        assert!(
            result.is_ok(),
            "a kill is a yield, not an error: {result:?}"
        );
    }
}
