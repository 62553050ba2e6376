//! SIGINT and SIGTERM during a run: the first one ends the run early, with
//! its report; a second one exits at once.
//!
//! Protocol:
//! 1. [`Signals::watch`] blocks both signals in the calling thread before
//!    any client thread starts, so every thread of the run inherits the
//!    mask and none of them is killed by the default action.
//! 2. One thread takes them with `sigtimedwait` (waking every
//!    [`POLL`] to see whether the run is over) and stores the first in
//!    `caught`; the reporter polls [`Signals::caught`] and ends the run.
//! 3. A second signal means "now": the process exits with 128 + signal.
//! 4. Dropping [`Signals`] ends the thread and restores the caller's mask.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the signal thread looks at the `done` flag.
const POLL: Duration = Duration::from_millis(50);

pub struct Signals {
    caught: Arc<AtomicI32>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    previous_mask: libc::sigset_t,
}

/// The set {SIGINT, SIGTERM}.
fn stop_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset/sigaddset initialise and fill a set we own; a
    // zeroed sigset_t is a valid place for sigemptyset to write.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0
            || libc::sigaddset(&mut set, libc::SIGINT) != 0
            || libc::sigaddset(&mut set, libc::SIGTERM) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// `pthread_sigmask` returns the error number instead of setting errno.
fn set_mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<libc::sigset_t> {
    // SAFETY: both pointers are to live sigset_t values; the old mask is
    // written to a zeroed local.
    unsafe {
        let mut previous: libc::sigset_t = std::mem::zeroed();
        match libc::pthread_sigmask(how, set, &mut previous) {
            0 => Ok(previous),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }
}

pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl Signals {
    /// Step 1 and 2: call before starting any thread of the run.
    pub fn watch() -> io::Result<Signals> {
        let set = stop_signals()?;
        let previous_mask = set_mask(libc::SIG_BLOCK, &set)?;
        let caught = Arc::new(AtomicI32::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (thread_caught, thread_done) = (caught.clone(), done.clone());
        let spawned = std::thread::Builder::new()
            .name("load-signals".into())
            .spawn(move || wait_loop(set, &thread_caught, &thread_done));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                let _ = set_mask(libc::SIG_SETMASK, &previous_mask);
                return Err(e);
            }
        };
        Ok(Signals {
            caught,
            done,
            thread: Some(thread),
            previous_mask,
        })
    }

    /// The first signal caught, if any.
    pub fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal),
        }
    }
}

fn wait_loop(set: libc::sigset_t, caught: &AtomicI32, done: &AtomicBool) {
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: POLL.as_nanos() as libc::c_long,
    };
    while !done.load(Ordering::Relaxed) {
        // SAFETY: `set` and `timeout` are live; no siginfo is asked for.
        let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if signal < 0 {
            // EAGAIN: the timeout passed; EINTR: another signal. Either
            // way, look at `done` and wait again.
            continue;
        }
        if caught
            .compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            let _ = writeln!(
                io::stderr(),
                "lunet load: {} again: exiting now",
                name(signal)
            );
            std::process::exit(128 + signal);
        }
    }
}

impl Drop for Signals {
    /// Step 4.
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = set_mask(libc::SIG_SETMASK, &self.previous_mask);
    }
}
