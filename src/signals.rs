//! Signals: SIGINT, SIGTERM and SIGHUP are blocked in every thread and
//! taken by one thread with `sigwait`, which hands each to the caller's
//! function, so no signal handler ever runs and each is logged.

use anyhow::{Context, Result};

/// The signals `lunet` takes.
const TAKEN: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and every thread it
/// starts later), so that [`forward`] can take them.
pub fn block() -> Result<libc::sigset_t> {
    // SAFETY: plain libc signal-set calls on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0 {
            return Err(std::io::Error::last_os_error()).context("cannot build a signal set");
        }
        for signal in TAKEN {
            if libc::sigaddset(&mut set, signal) != 0 {
                return Err(std::io::Error::last_os_error()).context("cannot build a signal set");
            }
        }
        // pthread_sigmask returns the error number instead of setting errno.
        let error = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error))
                .context("cannot block SIGINT, SIGTERM and SIGHUP");
        }
        Ok(set)
    }
}

/// Blocks every signal in the calling thread: for the helper threads that
/// may start before [`block`] runs, so that SIGINT, SIGTERM and SIGHUP
/// reach only the thread of [`forward`].
pub fn block_all() {
    // SAFETY: a local, filled signal set; pthread_sigmask only changes the
    // calling thread's mask.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Starts the thread that takes the signals in `set` and calls `to` with
/// each, until `to` returns false.
pub fn forward(set: libc::sigset_t, to: impl Fn(i32) -> bool + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("lunet-signals".into())
        .spawn(move || while to(wait(&set)) {})
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Waits for one of the signals in `set`. Falls back to SIGTERM (stop) if
/// the wait itself fails, which only an invalid set can cause.
fn wait(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is a valid signal set; `signal` is a valid out pointer.
    let error = unsafe { libc::sigwait(set, &mut signal) };
    if error != 0 {
        tracing::error!(
            "waiting for a signal failed: {}; stopping",
            std::io::Error::from_raw_os_error(error)
        );
        return libc::SIGTERM;
    }
    signal
}

/// `SIGTERM` for 15, for log lines.
pub fn name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        other => format!("signal {other}"),
    }
}
