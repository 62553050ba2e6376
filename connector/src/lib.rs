//! lunet-connector: the load generator behind `lunet load`.
//!
//! A run, step by step:
//! 1. [`LoadArgs`] (the command line) is checked into a [`args::Plan`]; the
//!    output files are opened so a bad path fails before any load.
//! 2. A [`Timeline`] fixes the start, the end of the warmup and the end of
//!    the run. Everything stops by itself at the end.
//! 3. Clients start: for a built-in profile, `-t` threads each with its own
//!    `mio::Poll` and state machines (`engine.rs`, `protocol.rs`); for
//!    `--script`, `-t` Lua services on a lunet runtime (`script.rs`). Each
//!    thread or service owns one [`stats::Recorder`].
//! 4. The main thread reports once a second (`report.rs`), then stops the
//!    clients, merges the recorders, prints the summary and writes `--json`.
//!
//! See `docs/connector.md` for the user's side.

mod args;
mod engine;
mod protocol;
mod report;
mod script;
mod stats;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use args::{parse_duration, parse_sources, LoadArgs, Profile};

use args::Workload;
use report::Report;
use stats::Recorder;

/// Why `lunet load` failed.
#[derive(Debug)]
pub enum Error {
    /// Bad or conflicting options.
    Usage(String),
    /// The script failed to load, raised, or never called `load.run`.
    Script(String),
    /// An output file could not be written.
    Output(String),
    /// The run finished but nothing succeeded.
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Script(m) => write!(f, "script error: {m}"),
            Error::Output(m) => write!(f, "{m}"),
            Error::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The fixed points in time of a run.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    pub start: Instant,
    /// End of the warmup: replies count from here.
    pub window_start: Instant,
    pub end: Instant,
}

/// Runs `lunet load`: generates the load, prints progress and the summary,
/// writes the requested files. Fails when the options are wrong, a script
/// fails, or no request (no connection, with `--hold`) succeeded.
pub fn run(args: LoadArgs) -> Result<(), Error> {
    let plan = Arc::new(args.plan()?);
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

    let mut script_error = None;
    if let Workload::Script { .. } = plan.workload {
        let scripted = script::start(&plan, timeline, &recorders, &stop)?;
        let watched = report.watch(&recorders, &|| {
            scripted
                .error()
                .map(|e| Error::Script(e.trim_end().to_string()))
        });
        stop.store(true, Ordering::Relaxed);
        script_error = scripted.error();
        scripted.stop();
        if let Err(error) = watched {
            let totals = report.totals(&recorders);
            report.finish(&totals, script_error.as_deref())?;
            return Err(error);
        }
    } else {
        let handles = engine::spawn(&plan, &timeline, &recorders, &stop);
        report.watch(&recorders, &|| None)?;
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            let _ = handle.join();
        }
    }

    let totals = report.totals(&recorders);
    report.finish(&totals, script_error.as_deref())?;
    if let Some(error) = script_error {
        return Err(Error::Script(error));
    }
    if plan.hold() {
        if totals.up == 0 {
            return Err(Error::Failed("no connection was up at the end".into()));
        }
    } else if totals.requests == 0 {
        let why = stats::ErrorKind::ALL
            .iter()
            .find_map(|k| totals.errors.first[*k as usize].clone())
            .unwrap_or_else(|| "no reply within the run".into());
        return Err(Error::Failed(format!("no request completed: {why}")));
    }
    Ok(())
}
