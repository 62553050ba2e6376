//! lunet-connector: the load generator behind `lunet load`.
//!
//! A run, step by step:
//! 1. [`LoadArgs`] (the command line) is checked into a [`args::Plan`]; the
//!    output files are opened so a bad path fails before any load.
//! 2. SIGINT and SIGTERM are blocked and taken by a thread of their own
//!    (`signals.rs`) before any client thread starts.
//! 3. A [`Timeline`] fixes the start, the end of the warmup and the end of
//!    the run. Everything stops by itself at the end.
//! 4. Clients start: for a built-in profile, `-t` threads each with its own
//!    `mio::Poll` and state machines (`engine.rs`, `protocol.rs`); for
//!    `--script`, `-t` Lua services on a lunet runtime (`script.rs`). Each
//!    thread or service owns one [`stats::Recorder`].
//! 5. The main thread reports once a second (`report.rs`) until the end, a
//!    signal, or stdout's reader going away; then it stops the clients
//!    (a script thread stuck in a slice is left behind and counted), merges
//!    the recorders, prints the summary and writes `--json`.
//!
//! See `docs/connector.md` for the user's side.

mod args;
mod backoff;
mod console;
mod engine;
mod protocol;
mod report;
mod script;
mod script_http;
mod signals;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use args::{parse_duration, parse_sources, LoadArgs, Profile};

use args::Workload;
use report::{End, Report};
use signals::Signals;
use stats::{lock, ErrorKind, Recorder};

/// Why `lunet load` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad or conflicting options.
    #[error("{0}")]
    Usage(String),
    /// The script failed to load, failed at its top level, never called
    /// `load.run`, or its handlers raised errors (counted in the report).
    #[error("script error: {0}")]
    Script(String),
    /// An output file could not be written.
    #[error("{0}")]
    Output(String),
    /// A thread or the signal watch could not be started.
    #[error("{0}")]
    Start(String),
    /// The run finished but nothing succeeded.
    #[error("{0}")]
    Failed(String),
    /// SIGINT or SIGTERM ended the run early; the report covers what ran.
    #[error("stopped by {0}: the report above covers the time that ran")]
    Interrupted(&'static str),
}

/// The fixed points in time of a run.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    pub start: Instant,
    /// End of the warmup: replies count from here.
    pub window_start: Instant,
    pub end: Instant,
}

/// The clients of a run, whichever kind.
enum Clients {
    Threads(Vec<std::thread::JoinHandle<()>>),
    Script(script::ScriptRun),
}

impl Clients {
    /// Stops the clients; false if a script thread did not stop in time.
    fn stop(self) -> bool {
        match self {
            Clients::Threads(handles) => {
                for handle in handles {
                    let _ = handle.join();
                }
                true
            }
            Clients::Script(run) => run.stop(),
        }
    }
}

/// Runs `lunet load`: generates the load, prints progress and the summary,
/// writes the requested files. Fails when the options are wrong, a script
/// fails or raises, no request (no connection, with `--hold`) succeeded,
/// or a signal cut the run short (after reporting what ran).
pub fn run(args: LoadArgs) -> Result<(), Error> {
    let plan = Arc::new(args.plan()?);
    let signals = Signals::watch()
        .map_err(|e| Error::Start(format!("cannot watch SIGINT and SIGTERM: {e}")))?;
    let start = Instant::now();
    let window_start = start + plan.warmup;
    let timeline = Timeline {
        start,
        window_start,
        end: window_start + plan.duration,
    };
    let mut report = Report::new(plan.clone(), timeline)?;
    let recorders: Vec<_> = (0..plan.threads)
        .map(|_| {
            Arc::new(Mutex::new(Recorder::new(
                plan.open_loop(),
                window_start,
                timeline.end,
            )))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    report.banner();

    let clients = match plan.workload {
        Workload::Script { .. } => {
            Clients::Script(script::start(&plan, timeline, &recorders, &stop)?)
        }
        _ => match engine::spawn(&plan, &timeline, &recorders, &stop) {
            Ok(handles) => Clients::Threads(handles),
            Err(error) => {
                // The threads that did start stop at once.
                stop.store(true, Ordering::Relaxed);
                return Err(error);
            }
        },
    };
    let news = || match &clients {
        Clients::Script(run) => run
            .new_error()
            .map(|e| format!("lunet load: script error (counted; the run goes on): {e}")),
        Clients::Threads(_) => None,
    };
    let end = report.watch(&recorders, &|| signals.caught().map(End::Signal), &news);
    stop.store(true, Ordering::Relaxed);
    if !clients.stop() {
        lock(&recorders[0]).error(ErrorKind::Script, || {
            "a handler was still running when the run ended: it never yields \
             (a loop without a socket call or lunet.sleep?); see the slice warnings above"
                .to_string()
        });
    }

    let totals = report.totals(&recorders);
    report.finish(&totals)?;
    drop(signals);
    if let End::Signal(signal) = end {
        return Err(Error::Interrupted(signals::name(signal)));
    }
    let script_errors = totals.errors.count(ErrorKind::Script);
    if script_errors > 0 {
        // Its first line: the traceback was printed when it happened.
        let first = totals
            .errors
            .first(ErrorKind::Script)
            .and_then(|e| e.lines().next())
            .unwrap_or_default();
        return Err(Error::Script(format!(
            "{script_errors} handler error(s), counted above; the first: {first}"
        )));
    }
    if plan.hold() {
        if totals.up == 0 {
            return Err(Error::Failed("no connection was up at the end".into()));
        }
    } else if totals.requests == 0 && end == End::Finished {
        let why = ErrorKind::ALL
            .iter()
            .find_map(|k| totals.errors.first(*k))
            .unwrap_or("no reply within the run");
        return Err(Error::Failed(format!("no request completed: {why}")));
    }
    Ok(())
}
