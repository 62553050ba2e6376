//! The `lunet` command: wires the crates together, nothing more.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lunet_core::{Config, Event, Message, Runtime};
use lunet_lua::{check_script, LuaService, Script, Settings, KIND_START};

#[derive(Parser)]
#[command(
    name = "lunet",
    version,
    about = "Network servers in Lua on a Rust reactor and work-stealing pool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs SCRIPT in every host VM and serves the listeners it opens.
    Serve(ServeArgs),
    /// Runs SCRIPT as one service with no listener; exits when it exits.
    Run(RunArgs),
    /// Generates load against a server and reports latencies (docs/connector.md).
    Load(Box<lunet_connector::LoadArgs>),
    /// Compiles SCRIPT and reports syntax errors without running it.
    Check { script: PathBuf },
}

/// Options of the engine, shared by `serve` and `run`.
#[derive(Args)]
struct EngineArgs {
    /// Worker threads [default: number of cores].
    #[arg(long)]
    workers: Option<usize>,
    /// Microseconds the reactor and idle workers keep polling before they sleep.
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// Threads of the blocking-task lane (SQLite, files, DNS).
    #[arg(long, default_value_t = 4)]
    lane_threads: usize,
    /// Lane tasks queued at once; past it callers wait for a slot.
    #[arg(long, default_value_t = 1024)]
    lane_queue: usize,
    /// Milliseconds a lane call may wait for a queue slot (0 = no limit).
    #[arg(long, default_value_t = 30_000)]
    lane_timeout_ms: u64,
    /// Seconds after which a running slice is logged with its traceback (0 = off).
    #[arg(long, default_value_t = 1.0)]
    slice_warn: f64,
    /// Seconds after which a running slice is interrupted with an error (0 = off).
    #[arg(long, default_value_t = 5.0)]
    slice_kill: f64,
    /// Longest line sock:readline accepts by default, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_line: usize,
    /// Unsent bytes per connection past which sock:write waits.
    #[arg(long, default_value_t = 1024 * 1024)]
    high_water: usize,
    /// Milliseconds a closed connection may take to flush and drain.
    #[arg(long, default_value_t = 10_000)]
    linger_ms: u64,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct RunArgs {
    /// The Lua script.
    script: PathBuf,
    /// key=value pairs the script reads with lunet.getenv.
    #[arg(value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// The Lua script (it calls lunet.listen).
    script: PathBuf,
    /// key=value pairs the script reads with lunet.getenv.
    #[arg(value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Host VMs that run the script [default: 2 x workers].
    #[arg(long)]
    hosts: Option<usize>,
    /// Accepted connections alive at once; more are accepted and closed.
    #[arg(long, default_value_t = 100_000)]
    max_conns: usize,
    /// Seconds that sessions get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Run(args) => run(args),
        Command::Load(args) => {
            // Errors inside a client script's own sessions are logged.
            init_logging("warn").and_then(|()| lunet_connector::run(*args).map_err(Into::into))
        }
        Command::Check { script } => check(&script),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lunet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) -> Result<()> {
    let level: tracing::Level = level.parse().with_context(|| {
        format!("--log-level {level}: expected error, warn, info, debug or trace")
    })?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    Ok(())
}

fn load_script(path: &PathBuf) -> Result<Script> {
    let source = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Script {
        path: path.display().to_string(),
        source,
    })
}

fn check(path: &PathBuf) -> Result<()> {
    let script = load_script(path)?;
    check_script(&script).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}: ok", path.display());
    Ok(())
}

fn parse_env(pairs: &[String]) -> Result<HashMap<String, String>> {
    let mut env = HashMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("expected KEY=VALUE, got '{pair}'");
        };
        env.insert(key.to_string(), value.to_string());
    }
    Ok(env)
}

/// Blocks SIGINT and SIGTERM in this thread (and every thread it starts
/// later), so the main thread can take them with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc signal-set calls on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut signal = 0;
    // SAFETY: `set` is a valid signal set; `signal` is a valid out pointer.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
    signal
}

/// Builds the runtime config and the Lua settings from the command line.
fn engine(
    engine: &EngineArgs,
    script: &std::path::Path,
    env: &[String],
) -> Result<(Config, Arc<Settings>)> {
    let mut config = Config::default();
    if let Some(workers) = engine.workers {
        config.workers = workers.max(1);
    }
    config.spin = Duration::from_micros(engine.spin_us);
    config.lane_threads = engine.lane_threads.max(1);
    config.lane_queue = engine.lane_queue.max(1);
    config.slice_warn = Duration::from_secs_f64(engine.slice_warn.max(0.0));
    config.slice_kill = Duration::from_secs_f64(engine.slice_kill.max(0.0));
    let settings = Arc::new(Settings {
        max_line: engine.max_line.max(1),
        high_water: engine.high_water.max(1),
        linger_ms: engine.linger_ms,
        lane_timeout_ms: engine.lane_timeout_ms,
        env: parse_env(env)?,
        script_dir: script.parent().map(|dir| dir.to_path_buf()),
    });
    Ok((config, settings))
}

fn run(args: RunArgs) -> Result<()> {
    init_logging(&args.engine.log_level)?;
    let script = load_script(&args.script)?;
    check_script(&script).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signals = block_signals();
    let (config, settings) = engine(&args.engine, &args.script, &args.env)?;
    let (runtime, _threads) = Runtime::start(config).context("cannot start the runtime")?;
    let (startup_tx, startup_rx) = mpsc::channel();
    let body = LuaService::new(&runtime, "main", settings, &script, Some(startup_tx))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let service = runtime.spawn_service("main", Box::new(body));
    let id = service.id();
    runtime.post(&service, start_message());
    drop(service);
    std::thread::spawn(move || {
        let signal = wait_signal(&signals);
        eprintln!("lunet: signal {signal}: stopping");
        std::process::exit(128 + signal);
    });
    match startup_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => bail!("{e}"),
        // The service exited (lunet.exit) before its main chunk returned.
        Err(_) => {}
    }
    runtime.wait_exit(id);
    runtime.stop();
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.engine.log_level)?;
    let script = load_script(&args.script)?;
    check_script(&script).map_err(|e| anyhow::anyhow!("{e}"))?;
    let signals = block_signals();
    let (mut config, settings) = engine(&args.engine, &args.script, &args.env)?;
    config.max_conns = args.max_conns;
    config.hold_accepts = true;
    let hosts = args.hosts.unwrap_or(config.workers * 2).max(1);

    let (runtime, threads) = Runtime::start(config).context("cannot start the runtime")?;
    let (startup_tx, startup_rx) = mpsc::channel();
    for index in 0..hosts {
        let name = format!("host-{index}");
        let body = LuaService::new(
            &runtime,
            &name,
            settings.clone(),
            &script,
            Some(startup_tx.clone()),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let service = runtime.spawn_service(&name, Box::new(body));
        runtime.post(&service, start_message());
    }
    drop(startup_tx);
    let signal_thread = std::thread::spawn(move || wait_signal(&signals));
    // Each host reports once its main chunk has returned (or failed).
    // Connections wait in the backlog until then, so they spread over all
    // hosts.
    let mut started = 0;
    let waiting_since = Instant::now();
    let mut warned = false;
    while started < hosts {
        if !warned && waiting_since.elapsed() > Duration::from_secs(5) {
            warned = true;
            tracing::warn!(
                "{started} of {hosts} hosts have finished running {}'s main chunk after 5 s; \
                 connections are accepted once all have",
                script.path
            );
        }
        match startup_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(())) => started += 1,
            Ok(Err(e)) => bail!("{} failed to start: {e}", script.path),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{} failed to start: a host stopped", script.path)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if signal_thread.is_finished() {
            break;
        }
    }
    runtime.release_accepts();
    tracing::info!(
        "serving {} with {} workers and {hosts} hosts",
        script.path,
        runtime.config().workers
    );

    let signal = signal_thread.join().unwrap_or(libc::SIGTERM);
    tracing::info!(
        "signal {signal}: no longer accepting; sessions have {}s to finish",
        args.grace
    );
    runtime.close_listeners();
    runtime.broadcast_shutdown();
    let deadline = Instant::now() + Duration::from_secs_f64(args.grace.max(0.0));
    while runtime.connections() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = runtime.connections();
    if left > 0 {
        tracing::warn!("grace period over: closing {left} connection(s)");
    } else {
        tracing::info!("all connections closed");
    }
    runtime.stop();
    drop(threads);
    Ok(())
}

fn start_message() -> Event {
    Event::Message(Message::signal(KIND_START))
}
