//! The `lunet` command: wires the crates together, nothing more.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lunet_core::{Config, Runtime};
use lunet_lua::{check_script, launch, Progress, Script, Settings};

#[derive(Parser)]
#[command(
    name = "lunet",
    version,
    about = "Network servers in Lua on a Rust reactor and work-stealing pool"
)]
struct Cli {
    #[command(subcommand)]
    command: LunetCommand,
}

#[derive(Subcommand)]
enum LunetCommand {
    /// Runs SCRIPT in every host VM and serves the listeners it opens.
    Serve(ServeArgs),
    /// Runs SCRIPT as one service with no listener; exits when it exits.
    Run(RunArgs),
    /// Generates load against a server and reports latencies (docs/connector.md).
    Load(Box<lunet_connector::LoadArgs>),
    /// Compiles SCRIPT and reports syntax errors without running it.
    Check { script: PathBuf },
}

/// Options of the engine, shared by `serve` and `run`. Their defaults are
/// the ones of the engine (`Config::default`) and of the Lua side
/// (`Settings::default`), written there only.
#[derive(Args)]
struct EngineArgs {
    /// Worker threads [default: number of cores].
    #[arg(long)]
    workers: Option<usize>,
    /// Microseconds the reactor and idle workers keep polling before they sleep.
    #[arg(long, default_value_t = Config::default().spin.as_micros() as u64)]
    spin_us: u64,
    /// Threads of the blocking-task lane (SQLite, files, DNS).
    #[arg(long, default_value_t = Config::default().lane_threads)]
    lane_threads: usize,
    /// Lane tasks queued at once; past it callers wait for a slot.
    #[arg(long, default_value_t = Config::default().lane_queue)]
    lane_queue: usize,
    /// Milliseconds a lane call may wait for a queue slot (0 = no limit).
    #[arg(long, default_value_t = Settings::default().lane_timeout_ms)]
    lane_timeout_ms: u64,
    /// Seconds after which a running slice is logged with its traceback (0 = off).
    #[arg(long, default_value_t = Config::default().slice_warn.as_secs_f64())]
    slice_warn: f64,
    /// Seconds after which a running slice is interrupted with an error (0 = off).
    #[arg(long, default_value_t = Config::default().slice_kill.as_secs_f64())]
    slice_kill: f64,
    /// Longest line sock:readline accepts by default, in bytes.
    #[arg(long, default_value_t = Settings::default().max_line)]
    max_line: usize,
    /// Unsent bytes per connection past which sock:write waits.
    #[arg(long, default_value_t = Settings::default().high_water)]
    high_water: usize,
    /// Milliseconds a closed connection may take to flush and drain.
    #[arg(long, default_value_t = Settings::default().linger_ms)]
    linger_ms: u64,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Memory each host VM (and `run`'s first service) may allocate, and
    /// hold in shared dicts: bytes, or with a K, M or G suffix; 0 = no
    /// bound. Services it spawns inherit it.
    #[arg(long, default_value_t = Settings::default().host_memory.unwrap_or(0), value_parser = parse_bytes)]
    host_memory: usize,
}

/// `1073741824`, `1G`, `512M`, `64k`: bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let scale: usize = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "'{text}': expected bytes, or a number with K, M or G"
            ))
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("'{text}': expected bytes, or a number with K, M or G"))
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
    #[arg(long, default_value_t = Config::default().max_conns)]
    max_conns: usize,
    /// Seconds that sessions get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        LunetCommand::Serve(args) => serve(args),
        LunetCommand::Run(args) => run(args),
        LunetCommand::Load(args) => {
            // Errors inside a client script's own sessions are logged.
            init_logging("warn").and_then(|()| lunet_connector::run(*args).map_err(Into::into))
        }
        LunetCommand::Check { script } => check(&script),
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
    compile(&script)?;
    println!("{}: ok", path.display());
    Ok(())
}

/// Compiles the script: a syntax error stops the command before anything
/// starts.
fn compile(script: &Script) -> Result<()> {
    check_script(script).with_context(|| format!("{} does not compile", script.path))
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
fn block_signals() -> Result<libc::sigset_t> {
    // SAFETY: plain libc signal-set calls on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigemptyset(&mut set) != 0
            || libc::sigaddset(&mut set, libc::SIGINT) != 0
            || libc::sigaddset(&mut set, libc::SIGTERM) != 0
        {
            return Err(std::io::Error::last_os_error()).context("cannot build a signal set");
        }
        // pthread_sigmask returns the error number instead of setting errno.
        let error = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(error))
                .context("cannot block SIGINT and SIGTERM");
        }
        Ok(set)
    }
}

/// Waits for one of the signals in `set`. Falls back to SIGTERM (stop) if
/// the wait itself fails, which only an invalid set can cause.
fn wait_signal(set: &libc::sigset_t) -> i32 {
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
        host_memory: (engine.host_memory > 0).then_some(engine.host_memory),
    });
    Ok((config, settings))
}

fn run(args: RunArgs) -> Result<()> {
    init_logging(&args.engine.log_level)?;
    let script = load_script(&args.script)?;
    compile(&script)?;
    let signals = block_signals()?;
    let (config, settings) = engine(&args.engine, &args.script, &args.env)?;
    let (runtime, _threads) = Runtime::start(config).context("cannot start the runtime")?;
    let mut main = launch(
        &runtime,
        &script,
        &settings,
        &["main".to_string()],
        &|_, _| Ok(()),
    )?;
    let id = main.ids()[0];
    std::thread::spawn(move || {
        let signal = wait_signal(&signals);
        eprintln!("lunet: signal {signal}: stopping");
        std::process::exit(128 + signal);
    });
    // Gone: the service exited (lunet.exit) before its main chunk returned.
    main.wait(None)
        .with_context(|| format!("{} failed to start", script.path))?;
    runtime.wait_exit(id);
    runtime.stop();
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.engine.log_level)?;
    let script = load_script(&args.script)?;
    compile(&script)?;
    let signals = block_signals()?;
    let (mut config, settings) = engine(&args.engine, &args.script, &args.env)?;
    config.max_conns = args.max_conns;
    config.hold_accepts = true;
    let hosts = args.hosts.unwrap_or(config.workers * 2).max(1);

    let (runtime, threads) = Runtime::start(config).context("cannot start the runtime")?;
    let names: Vec<String> = (0..hosts).map(|index| format!("host-{index}")).collect();
    let mut launched = launch(&runtime, &script, &settings, &names, &|_, _| Ok(()))?;
    let signal_thread = std::thread::spawn(move || wait_signal(&signals));
    // Each host reports once its main chunk has returned (or failed).
    // Connections wait in the backlog until then, so they spread over all
    // hosts.
    let waiting_since = Instant::now();
    let mut warned = false;
    loop {
        let progress = launched
            .wait(Some(Duration::from_millis(50)))
            .with_context(|| format!("{} failed to start", script.path))?;
        match progress {
            Progress::Started => break,
            Progress::Gone { .. } => bail!("{} failed to start: a host stopped", script.path),
            Progress::Waiting { started } => {
                if !warned && waiting_since.elapsed() > Duration::from_secs(5) {
                    warned = true;
                    tracing::warn!(
                        "{started} of {hosts} hosts have finished running {}'s main chunk \
                         after 5 s; connections are accepted once all have",
                        script.path
                    );
                }
            }
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
