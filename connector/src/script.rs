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
//!    the connection fails, until the run ends.
//! 3. `load.request(fn, ...)` times one request: in an open loop (`-R`) it
//!    first waits for the connection's next intended send time (1 ms timer
//!    resolution) and counts the latency from it.
//! 4. An error raised in a handler, or at the top level, stops the run: the
//!    command exits non-zero with the message, which names the script.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lunet_core::{Config, Event, Message, Runtime, Threads};
use lunet_lua::mlua::{self, Lua};
use lunet_lua::{LuaService, Script, Settings, KIND_START};

use crate::args::{Plan, Workload};
use crate::stats::{ErrorKind, Recorder};
use crate::{Error, Timeline};

const DRIVER: &str = include_str!("driver.lua");

/// A scripted run in progress.
pub struct ScriptRun {
    runtime: Runtime,
    threads: Option<Threads>,
    /// The first error a handler raised.
    pub error: Arc<Mutex<Option<String>>>,
}

impl ScriptRun {
    /// Stops the runtime and waits for its threads.
    pub fn stop(mut self) {
        self.runtime.stop();
        if let Some(threads) = self.threads.take() {
            threads.join();
        }
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Shared {
    timeline: Timeline,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    started: AtomicUsize,
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
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

    let r = recorder.clone();
    core.set(
        "done",
        lua.create_function(move |_, (intended, sent): (i64, i64)| {
            let now = Instant::now();
            lock(&r).complete(
                now,
                instant(intended),
                instant(sent),
                crate::stats::Note::None,
            );
            Ok(())
        })?,
    )?;
    let r = recorder.clone();
    core.set(
        "fail",
        lua.create_function(move |_, (word, message): (String, Option<String>)| {
            let kind = ErrorKind::from_name(&word).unwrap_or_else(|| ErrorKind::from_lua(&word));
            lock(&r).error(kind, || message.unwrap_or(word));
            Ok(())
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
    core.set(
        "script_error",
        lua.create_function(move |_, message: String| {
            s.error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(message);
            s.stop.store(true, Ordering::Relaxed);
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
    let Workload::Script { path, env } = &plan.workload else {
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
        error: Arc::new(Mutex::new(None)),
        started: AtomicUsize::new(0),
    });
    let run = ScriptRun {
        runtime: runtime.clone(),
        threads: Some(threads),
        error: shared.error.clone(),
    };
    let fail = |run: ScriptRun, message: String| {
        run.stop();
        Err(Error::Script(message))
    };

    let (startup_tx, startup_rx) = mpsc::channel();
    let mut first = 0;
    for (thread, recorder) in recorders.iter().enumerate().take(plan.threads) {
        let name = format!("load-{thread}");
        let setup = |lua: &Lua| install(lua, plan, &shared, recorder, thread, first);
        let body = match LuaService::with_setup(
            &runtime,
            &name,
            settings.clone(),
            &script,
            Some(startup_tx.clone()),
            &setup,
        ) {
            Ok(body) => body,
            Err(e) => return fail(run, format!("{shown}: {e}")),
        };
        first += plan.connections_of(thread);
        let service = runtime.spawn_service(&name, Box::new(body));
        runtime.post(&service, Event::Message(Message::signal(KIND_START)));
    }
    drop(startup_tx);
    for _ in 0..plan.threads {
        match startup_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(run, format!("{shown} failed at its top level: {e}")),
            Err(_) => {
                return fail(
                    run,
                    format!("{shown}: its top level did not finish within 10s"),
                )
            }
        }
    }
    // load.run is normally called in the top level's first slice; allow a
    // top level that waits a little first.
    let deadline = Instant::now() + plan.timeout.max(Duration::from_secs(1));
    while shared.started.load(Ordering::Relaxed) < plan.threads {
        if let Some(error) = run.error() {
            return fail(run, format!("{shown}: {error}"));
        }
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
