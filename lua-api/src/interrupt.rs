//! How the monitor stops a Lua slice that runs too long, without a hook in
//! steady state (a permanent count hook makes Lua 5.4 ~2x slower:
//! `shared/research/mlua.md`).
//!
//! Protocol (the trick `lua.c` uses for Ctrl-C, made to land anywhere):
//! 1. Around every resume the worker publishes the running coroutine's
//!    `lua_State` in `running` (`enter`) and takes it back (`leave`). It
//!    also notes which session runs: the `lunet` callbacks that need to
//!    know who calls (`lunet.call`, `lunet.response`) read it here, with
//!    no extra access to the VM's state per resume.
//! 2. Inside a slice the running coroutine changes when the script resumes
//!    a coroutine of its own: the prelude's `coroutine.resume` calls
//!    `core.switch(co)` before and `core.switch()` after (`switch`), which
//!    publishes the coroutine that really runs. A hook pending for the
//!    slice is carried over to it.
//! 3. The monitor thread, finding the slice stuck, claims the slot
//!    (`state` RUNNING -> BUSY, so the worker can neither leave nor switch
//!    meanwhile and the pointer stays valid), sets `action` and installs a
//!    count hook with `lua_sethook` (which Lua documents as safe to call
//!    asynchronously), then releases the slot.
//! 4. The hook runs on the worker thread at the next instruction of the
//!    running coroutine. WARN logs a traceback and removes itself. KILL
//!    raises an error ("... was interrupted") and stays installed, so every
//!    instruction after it raises again: an error crosses C boundaries
//!    (table.sort comparators, gsub callbacks, metamethods, message
//!    handlers) where a yield cannot, and a `pcall` that catches it raises
//!    again at its next instruction, so `while true do pcall(f) end` stops
//!    too. The session ends with that error and its traceback; the kill
//!    is logged when it lands, not before. Lua calls an `xpcall` message
//!    handler for an error with hooks off (they are off inside a hook), so
//!    a handler that loops could never be stopped: before raising, the
//!    hook replaces the handler of every `xpcall` on the coroutine's stack
//!    with one that passes the message on.
//! 5. `leave` removes the hook from the coroutine that ran last and clears
//!    the action, on the worker, so a warning or a kill meant for one slice
//!    never lands in the next one. A hook left on another coroutine of
//!    that slice finds no action when it next runs and removes itself.

use std::cell::Cell;
use std::ffi::{c_int, CStr};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lunet_core::{Interrupt, Service};
use mlua::ffi;
use mlua::{Function, Lua, Thread};

use crate::ids::SessionId;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const BUSY: u8 = 2;

const ACTION_NONE: u8 = 0;
const ACTION_WARN: u8 = 1;
const ACTION_KILL: u8 = 2;

/// The error an interrupted slice raises (and its session ends with).
pub fn killed_message() -> String {
    KILLED.to_string()
}

const KILLED: &str = "the slice ran longer than --slice-kill and was interrupted";
const KILLED_C: &CStr = c"the slice ran longer than --slice-kill and was interrupted";

thread_local! {
    /// The interrupt slot of the service this worker thread is running.
    static CURRENT: Cell<*const LuaInterrupt> = const { Cell::new(std::ptr::null()) };
}

pub struct LuaInterrupt {
    state: AtomicU8,
    running: AtomicPtr<ffi::lua_State>,
    action: AtomicU8,
    /// The kill landed in this slice (step 4).
    killed: AtomicBool,
    /// The monitor installed the hook during this slice (step 5).
    hooked: AtomicBool,
    /// How long the slice had run when the kill was armed (for the log).
    armed_ms: AtomicU64,
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
            armed_ms: AtomicU64::new(0),
            session: AtomicU64::new(0),
            label: Mutex::new(String::new()),
        }
    }

    pub fn set_name(&self, name: &str, handle: u64) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = format!("{name} (:{handle})");
    }

    fn label(&self) -> String {
        self.label.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// The resume returned; true if the monitor's kill landed in that slice.
    #[inline]
    pub fn leave(&self) -> bool {
        self.claim(IDLE);
        let running = self.running.swap(std::ptr::null_mut(), Ordering::Relaxed);
        if self.hooked.swap(false, Ordering::Relaxed) {
            self.unhook(running);
        }
        self.killed.swap(false, Ordering::Relaxed)
    }

    /// Moves the slot from RUNNING to `to`, waiting while the monitor
    /// holds it (the few instructions of `lua_sethook`).
    #[inline]
    fn claim(&self, to: u8) {
        while self
            .state
            .compare_exchange(RUNNING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    /// Step 2, on the worker: `to` runs from now on in this slice.
    #[inline]
    fn switch(&self, to: *mut ffi::lua_State) {
        if self.state.load(Ordering::Acquire) == IDLE {
            return; // not inside a slice: nothing to follow
        }
        self.claim(BUSY);
        self.running.store(to, Ordering::Relaxed);
        if self.action.load(Ordering::SeqCst) != ACTION_NONE {
            // SAFETY: `to` is a live coroutine of this VM, on its thread.
            unsafe { ffi::lua_sethook(to, Some(hook), ffi::LUA_MASKCOUNT, 1) };
        }
        self.state.store(RUNNING, Ordering::Release);
    }

    /// The session being resumed now (or the last one resumed).
    #[inline]
    pub fn session(&self) -> SessionId {
        SessionId::from_raw(self.session.load(Ordering::Relaxed))
    }

    /// Step 5: the slice is over and the monitor can no longer install
    /// (the slot is IDLE); whatever the hook was meant for is void.
    #[cold]
    #[inline(never)]
    fn unhook(&self, running: *mut ffi::lua_State) {
        self.action.store(ACTION_NONE, Ordering::SeqCst);
        if !running.is_null() {
            // SAFETY: `running` is the coroutine that ran last in the slice
            // that just ended, still referenced by its session or by the
            // coroutine that resumed it; this is the worker thread that runs
            // its VM, and no Lua code runs meanwhile.
            unsafe { ffi::lua_sethook(running, None, 0, 0) };
        }
    }

    /// Step 3, on the monitor thread.
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
            // A kill is never downgraded to a warning.
            let _ = self.action.fetch_max(action, Ordering::SeqCst);
            self.hooked.store(true, Ordering::Relaxed);
            // SAFETY: `state` is the coroutine the worker is running; while
            // we hold BUSY the worker can neither return from `leave` nor
            // switch, so the coroutine stays alive. lua_sethook is
            // documented as safe to call from another thread/signal.
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
            self.label()
        );
        self.install(ACTION_WARN);
    }

    fn kill(&self, _service: &Service, running_ms: u64) {
        self.armed_ms.store(running_ms, Ordering::Relaxed);
        self.install(ACTION_KILL);
    }
}

/// `core.switch([co])` (step 2): a C function, so that following the
/// script's coroutines costs a call, not an mlua callback.
pub fn switch_function(lua: &Lua) -> mlua::Result<Function> {
    unsafe extern "C-unwind" fn switch(state: *mut ffi::lua_State) -> c_int {
        // SAFETY: called by Lua with its own state; `lua_tothread` reads
        // the argument (null when it is not a coroutine). CURRENT points at
        // the slot of the VM this worker runs (set by `enter`), which lives
        // as long as its service.
        unsafe {
            let to = if ffi::lua_gettop(state) >= 1 {
                ffi::lua_tothread(state, 1)
            } else {
                state
            };
            let slot = CURRENT.with(|current| current.get());
            if !to.is_null() && !slot.is_null() {
                (*slot).switch(to);
            }
        }
        0
    }
    // SAFETY: `switch` follows the C function protocol: it takes its
    // arguments from the stack and returns no value.
    unsafe { lua.create_c_function(switch) }
}

/// The address of Lua's `xpcall` (the same C function in every VM).
static XPCALL: AtomicUsize = AtomicUsize::new(0);

/// Notes Lua's `xpcall` from a fresh VM, before any script ran (step 4).
pub fn note_xpcall(lua: &Lua) -> mlua::Result<()> {
    // SAFETY: reads a global of a fresh VM on its own thread.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            ffi::lua_getglobal(state, c"xpcall".as_ptr());
            if let Some(xpcall) = ffi::lua_tocfunction(state, -1) {
                XPCALL.store(xpcall as usize, Ordering::Relaxed);
            }
            ffi::lua_pop(state, 1);
        })
    }
}

/// The message handler `disarm_message_handlers` puts in: the message as is.
unsafe extern "C-unwind" fn pass_message(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: a C function called by Lua with its own state.
    unsafe { ffi::lua_settop(state, 1) };
    1
}

/// Step 4: every `xpcall` on the running coroutine's stack gets
/// `pass_message` as its handler (its frame's second slot, where Lua looks
/// the handler up when it calls it).
unsafe fn disarm_message_handlers(state: *mut ffi::lua_State) {
    let xpcall = XPCALL.load(Ordering::Relaxed);
    if xpcall == 0 {
        return;
    }
    // SAFETY: plain debug API calls on the running coroutine, from its own
    // thread, inside its hook (which has LUA_MINSTACK free slots).
    unsafe {
        let mut frame: ffi::lua_Debug = std::mem::zeroed();
        let mut level = 0;
        while ffi::lua_getstack(state, level, &mut frame) != 0 {
            level += 1;
            if ffi::lua_getinfo(state, c"f".as_ptr(), &mut frame) == 0 {
                continue;
            }
            let function = ffi::lua_tocfunction(state, -1);
            ffi::lua_pop(state, 1);
            if function.is_some_and(|f| f as usize == xpcall) {
                ffi::lua_pushcfunction(state, pass_message);
                if ffi::lua_setlocal(state, &frame, 2).is_null() {
                    ffi::lua_pop(state, 1);
                }
            }
        }
    }
}

#[cold]
#[inline(never)]
fn log_traceback(slot: &LuaInterrupt, text: String) {
    tracing::warn!("{}: long slice is here: {text}", slot.label());
}

#[cold]
#[inline(never)]
fn log_landed(slot: &LuaInterrupt) {
    tracing::error!(
        "{}: interrupted a slice that had run for {} ms (past --slice-kill); its session ends with an error",
        slot.label(),
        slot.armed_ms.load(Ordering::Relaxed)
    );
}

/// Step 4, on the worker thread, inside the running coroutine.
unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
    // SAFETY: called by Lua with the running state; every call below is a
    // plain Lua API call on that state from its own thread. The error is
    // raised with no Rust value alive in this frame (lua_error does not
    // return).
    unsafe {
        let slot = CURRENT.with(|current| current.get());
        let action = if slot.is_null() {
            ACTION_NONE
        } else {
            (*slot).action.load(Ordering::SeqCst)
        };
        match action {
            ACTION_WARN => {
                ffi::lua_sethook(state, None, 0, 0);
                let slot = &*slot;
                if slot
                    .action
                    .compare_exchange(ACTION_WARN, ACTION_NONE, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    ffi::luaL_traceback(state, state, std::ptr::null(), 0);
                    let text = ffi::lua_tolstring(state, -1, std::ptr::null_mut());
                    let text = if text.is_null() {
                        String::from("(no traceback)")
                    } else {
                        CStr::from_ptr(text).to_string_lossy().into_owned()
                    };
                    ffi::lua_pop(state, 1);
                    log_traceback(slot, text);
                }
            }
            ACTION_KILL => {
                let slot = &*slot;
                if !slot.killed.swap(true, Ordering::Relaxed) {
                    log_landed(slot);
                }
                disarm_message_handlers(state);
                ffi::luaL_where(state, 1);
                ffi::lua_pushstring(state, KILLED_C.as_ptr());
                ffi::lua_concat(state, 2);
                ffi::lua_error(state);
            }
            _ => ffi::lua_sethook(state, None, 0, 0),
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
        let error = result.unwrap_err().to_string();
        assert!(error.contains(KILLED), "{error}");
    }
}
