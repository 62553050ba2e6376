//! `--script`: clients written in Lua with the servers' socket API.
//!
//! How a scripted run works:
//! 1. One lunet runtime with `-t` workers and `-t` Lua services. Each service
//!    loads the script with a `load` module beside `lunet` (`driver.lua`
//!    defines it in Lua on a few Rust functions built here).
//! 2. The script's top level runs once per service and calls
//!    `load.run(handler)`. That forks one session per connection of the
//!    service's share; each connects (paced by `--connect-rate`), runs
//!    `handler(sock, index)`, and connects again if the handler returns or
//!    the connection fails, until the run ends: at once if the connection
//!    completed a request, else after the back-off of `backoff.rs`.
//! 3. `load.request(fn, ...)` times one request: in an open loop (`-R`) it
//!    first waits for the connection's next intended send time (1 ms timer
//!    resolution) and counts the latency from it.
//! 4. The handler's socket counts the bytes its reads and writes move; the
//!    counts reach the recorder with each request's result.
//! 5. An error raised at the top level stops the run before any load. An
//!    error raised in a handler is counted as a `script` error (the first
//!    one is printed at once), its connection is closed and connects again
//!    after a back-off, and the run goes on; the command then exits
//!    non-zero.
//! 6. At the end the runtime is stopped and its threads get [`STOP_GRACE`]
//!    to finish. A worker still running then is in a slice that never
//!    yields (a handler looping without a socket call): it is left behind,
//!    counted as a `script` error, and the report goes on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lunet_core::{Config, Runtime, Threads};
use lunet_lua::mlua::{self, Lua};
use lunet_lua::{Progress, Script, Settings};

use crate::args::{Plan, Workload};
use crate::protocol::Rng;
use crate::stats::{lock, ErrorKind, Recorder};
use crate::{Error, Timeline};

const DRIVER: &str = include_str!("driver.lua");

/// How long the runtime's threads get to finish once the run is over. A
/// slice that is not done by then never yields.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A scripted run in progress.
pub struct ScriptRun {
    runtime: Runtime,
    threads: Option<Threads>,
    shared: Arc<Shared>,
}

impl ScriptRun {
    /// Stops the runtime and waits [`STOP_GRACE`] for its threads. Returns
    /// false if some did not finish: they are left to the process's exit.
    pub fn stop(mut self) -> bool {
        self.runtime.stop();
        let Some(threads) = self.threads.take() else {
            return true;
        };
        let (done_tx, done_rx) = mpsc::channel();
        let joiner = std::thread::Builder::new()
            .name("load-stop".into())
            .spawn(move || {
                threads.join();
                let _ = done_tx.send(());
            });
        joiner.is_ok() && done_rx.recv_timeout(STOP_GRACE).is_ok()
    }

    /// The first error a handler raised, the first time it is asked for
    /// after it happened (the reporter prints it at once).
    pub fn new_error(&self) -> Option<String> {
        let error = self.shared.error.lock().unwrap_or_else(|e| e.into_inner());
        if error.is_none() || self.shared.error_shown.swap(true, Ordering::Relaxed) {
            return None;
        }
        error.clone()
    }
}

struct Shared {
    timeline: Timeline,
    stop: Arc<AtomicBool>,
    /// The first error a handler raised (all are counted by the recorders).
    error: Mutex<Option<String>>,
    /// `error` was handed to the reporter.
    error_shown: AtomicBool,
    started: AtomicUsize,
}

/// Builds the `load` module of one service.
fn install(
    lua: &Lua,
    plan: &Plan,
    shared: &Arc<Shared>,
    recorder: &Arc<Mutex<Recorder>>,
    thread: usize,
    first: usize,
) -> mlua::Result<()> {
    let core = lua.create_table()?;
    let connections = plan.connections_of(thread);
    core.set("target", plan.target.to_string())?;
    core.set("count", connections)?;
    core.set("first", first + 1)?;
    core.set("total", plan.connections)?;
    core.set("thread", thread + 1)?;
    core.set("timeout_ms", plan.timeout.as_millis().max(1) as i64)?;
    // --source: connection `index` (from 1) binds source `(index - 1) % n`.
    let sources: Vec<String> = plan.sources.iter().map(|ip| ip.to_string()).collect();
    core.set("sources", sources)?;
    let interval_ns = if plan.open_loop() {
        (plan.connections as f64 / plan.rate * 1e9) as i64
    } else {
        0
    };
    core.set("interval_ns", interval_ns)?;

    let start = shared.timeline.start;
    let nanos = move |at: Instant| at.saturating_duration_since(start).as_nanos() as i64;
    let instant = move |ns: i64| start + Duration::from_nanos(ns.max(0) as u64);
    core.set(
        "clock",
        lua.create_function(move |_, ()| Ok(nanos(Instant::now())))?,
    )?;

    // The byte counts of the handlers' sockets come with each result, and
    // the HTTP status when the request returned a response.
    let r = recorder.clone();
    core.set(
        "done",
        lua.create_function(
            move |_,
                  (intended, sent, bytes_in, bytes_out, status): (
                i64,
                i64,
                u64,
                u64,
                Option<u16>,
            )| {
                let now = Instant::now();
                let mut recorder = lock(&r);
                let note = status.map_or(crate::stats::Note::None, crate::stats::Note::Status);
                recorder.complete(now, instant(intended), instant(sent), note);
                recorder.transfer(bytes_in, bytes_out);
                Ok(())
            },
        )?,
    )?;
    let r = recorder.clone();
    core.set(
        "fail",
        lua.create_function(
            move |_, (word, message, bytes_in, bytes_out): (String, Option<String>, u64, u64)| {
                let kind =
                    ErrorKind::from_name(&word).unwrap_or_else(|| ErrorKind::from_lua(&word));
                let mut recorder = lock(&r);
                recorder.error(kind, || message.unwrap_or(word));
                recorder.transfer(bytes_in, bytes_out);
                Ok(())
            },
        )?,
    )?;
    let r = recorder.clone();
    core.set(
        "transfer",
        lua.create_function(move |_, (bytes_in, bytes_out): (u64, u64)| {
            lock(&r).transfer(bytes_in, bytes_out);
            Ok(())
        })?,
    )?;
    let r = recorder.clone();
    core.set(
        "reconnecting",
        lua.create_function(move |_, ()| {
            lock(&r).reconnects += 1;
            Ok(())
        })?,
    )?;
    let rng = RefCell::new(Rng::new(thread as u64 + 1));
    core.set(
        "backoff_ms",
        lua.create_function(move |_, failures: u32| {
            let wait = crate::backoff::delay(failures.max(1), &mut rng.borrow_mut());
            Ok(wait.as_millis().max(1) as i64)
        })?,
    )?;
    let r = recorder.clone();
    core.set(
        "up",
        lua.create_function(move |_, delta: i64| {
            let mut recorder = lock(&r);
            if delta > 0 {
                recorder.connects += 1;
                recorder.up += 1;
            } else {
                recorder.up = recorder.up.saturating_sub(1);
            }
            Ok(())
        })?,
    )?;
    let s = shared.clone();
    core.set(
        "running",
        lua.create_function(move |_, ()| {
            Ok(!s.stop.load(Ordering::Relaxed) && Instant::now() < s.timeline.end)
        })?,
    )?;
    let s = shared.clone();
    let r = recorder.clone();
    core.set(
        "script_error",
        lua.create_function(move |_, message: String| {
            s.error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| message.clone());
            lock(&r).error(ErrorKind::Script, || message);
            Ok(())
        })?,
    )?;

    let s = shared.clone();
    core.set(
        "started",
        lua.create_function(move |_, ()| {
            s.started.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })?,
    )?;
    // Connect pacing: this service's share of --connect-rate, as the time
    // each connect may start (ms to wait).
    let per_service = plan.connect_rate / plan.threads as f64;
    let next_slot = Mutex::new(Instant::now());
    core.set(
        "connect_wait",
        lua.create_function(move |_, ()| {
            if per_service <= 0.0 {
                return Ok(0i64);
            }
            let now = Instant::now();
            let mut slot = next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*slot).max(now);
            *slot = at + Duration::from_secs_f64(1.0 / per_service);
            Ok((at - now).as_millis() as i64)
        })?,
    )?;

    crate::script_http::install(lua, plan, &core)?;

    let module: mlua::Table = lua
        .load(DRIVER)
        .set_name("@lunet/connector/driver.lua")
        .call(core)?;
    let loaded: mlua::Table = lua.globals().get::<mlua::Table>("package")?.get("loaded")?;
    loaded.set("load", module)?;
    Ok(())
}

/// Loads the script in one service per thread and starts the run. Returns
/// once every service has run its top level and called `load.run`.
pub fn start(
    plan: &Arc<Plan>,
    timeline: Timeline,
    recorders: &[Arc<Mutex<Recorder>>],
    stop: &Arc<AtomicBool>,
) -> Result<ScriptRun, Error> {
    let Workload::Script { path, env, .. } = &plan.workload else {
        unreachable!("script::start runs scripts only");
    };
    let shown = path.display().to_string();
    let source =
        std::fs::read(path).map_err(|e| Error::Script(format!("cannot read {shown}: {e}")))?;
    let script = Script {
        path: shown.clone(),
        source,
    };
    lunet_lua::check_script(&script).map_err(|e| Error::Script(e.to_string()))?;

    let config = Config {
        workers: plan.threads,
        ..Config::default()
    };
    let (runtime, threads) = Runtime::start(config)
        .map_err(|e| Error::Script(format!("cannot start the Lua runtime: {e}")))?;
    let settings = Arc::new(Settings {
        env: env.iter().cloned().collect::<HashMap<_, _>>(),
        ..Settings::default()
    });
    let shared = Arc::new(Shared {
        timeline,
        stop: stop.clone(),
        error: Mutex::new(None),
        error_shown: AtomicBool::new(false),
        started: AtomicUsize::new(0),
    });
    let run = ScriptRun {
        runtime: runtime.clone(),
        threads: Some(threads),
        shared: shared.clone(),
    };
    let fail = |run: ScriptRun, message: String| {
        // Threads that do not stop in time go with the process.
        let _ = run.stop();
        Err(Error::Script(message))
    };

    // Each client service's first connection number.
    let firsts: Vec<usize> = (0..plan.threads)
        .scan(0, |first, thread| {
            let this = *first;
            *first += plan.connections_of(thread);
            Some(this)
        })
        .collect();
    let names: Vec<String> = (0..plan.threads).map(|t| format!("load-{t}")).collect();
    let setup = |thread: usize, lua: &Lua| {
        install(
            lua,
            plan,
            &shared,
            &recorders[thread],
            thread,
            firsts[thread],
        )
    };
    let mut launch = match lunet_lua::launch(&runtime, &script, &settings, &names, &setup) {
        Ok(launch) => launch,
        Err(e) => return fail(run, format!("{shown}: {}", e.source)),
    };
    match launch.wait(Some(Duration::from_secs(10))) {
        Ok(Progress::Started) => {}
        Ok(Progress::Gone { .. }) => {
            return fail(run, format!("{shown}: its top level exited"));
        }
        Ok(Progress::Waiting { .. }) => {
            return fail(
                run,
                format!("{shown}: its top level did not finish within 10s"),
            )
        }
        Err(e) => return fail(run, format!("{shown} failed at its top level: {e}")),
    }
    // load.run is normally called in the top level's first slice; allow a
    // top level that waits a little first.
    let deadline = Instant::now() + plan.timeout.max(Duration::from_secs(1));
    while shared.started.load(Ordering::Relaxed) < plan.threads {
        if Instant::now() >= deadline {
            return fail(
                run,
                format!("{shown} did not call load.run(handler) at its top level"),
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(run)
}
