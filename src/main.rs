//! The `lunet` command: wires the crates together, nothing more.

mod allocator;
mod idle;
mod logging;
mod processes;
mod serve;
mod signals;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lunet_core::{Config, Runtime};
use lunet_lua::admin::{self, Admin, AdminConfig, Health, HealthState, ReloadHook};
use lunet_lua::{check_script, launch, Script, Settings};

use serve::{Control, Server};

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
    /// Modules of a cluster (docs/cluster.md).
    #[command(subcommand)]
    Modules(ModulesCommand),
}

#[derive(Subcommand)]
enum ModulesCommand {
    /// Stores the modules of DIR (a/b.lua is module a.b, at the version its
    /// lunet.module{} declares) in the cluster's module store (JetStream).
    Push {
        dir: PathBuf,
        /// The NATS server of the cluster: nats://IP:PORT.
        #[arg(long, value_name = "URL")]
        cluster: String,
    },
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
    /// Unsent bytes per connection past which its writers wait (all the
    /// sessions that write to it); one that cannot wait gets "overloaded".
    #[arg(long, default_value_t = Settings::default().high_water)]
    high_water: usize,
    /// Milliseconds a writer waits for room on a socket without a timeout
    /// of its own before it gets "overloaded" (0 = no limit).
    #[arg(long, default_value_t = Settings::default().write_timeout_ms)]
    write_timeout_ms: u64,
    /// Milliseconds a closed connection may take to flush and drain.
    #[arg(long, default_value_t = Settings::default().linger_ms)]
    linger_ms: u64,
    /// error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Memory each host VM (and `run`'s first service) may allocate, and
    /// hold in shared dicts: bytes, or with a K, M or G suffix; 0 = no
    /// bound. Services it spawns inherit it.
    #[arg(long, default_value_t = Settings::default().host_memory.unwrap_or(0), value_parser = parse_bytes)]
    host_memory: usize,
    /// A directory where runtimes find their modules (module a.b is the
    /// file a/b.lua); repeatable, searched in order [default: modules/
    /// next to the script].
    #[arg(long = "modules", value_name = "DIR")]
    modules: Vec<PathBuf>,
    /// Where runtimes save their state (state.sqlite) and keep their
    /// storage [default: data/ next to the script].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

/// The admin listener (docs/operations.md).
#[derive(Args)]
struct AdminArgs {
    /// IP:PORT of the admin console, /metrics and /health (loopback only,
    /// unless --admin-public).
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<String>,
    /// Let --admin listen on an address that is not loopback.
    #[arg(long)]
    admin_public: bool,
}

/// Joining a cluster (docs/cluster.md).
#[derive(Args)]
struct ClusterArgs {
    /// The NATS server of the cluster: nats://IP:PORT.
    #[arg(long, value_name = "URL", requires = "node")]
    cluster: Option<String>,
    /// This node's name in the cluster, unique among live nodes.
    #[arg(long, value_name = "NAME", requires = "cluster")]
    node: Option<String>,
}

/// Joins the cluster if `--cluster` asks for it, before any script runs.
fn join_cluster(runtime: &Runtime, settings: &Arc<Settings>, args: &ClusterArgs) -> Result<()> {
    let (Some(url), Some(node)) = (&args.cluster, &args.node) else {
        return Ok(());
    };
    let config = lunet_lua::cluster::ClusterConfig {
        url: url.clone(),
        node: node.clone(),
    };
    lunet_lua::cluster::start(runtime, settings, &config)?;
    Ok(())
}

fn push_modules(dir: &std::path::Path, url: &str) -> Result<()> {
    init_logging("warn", None)?;
    let modules = lunet_lua::cluster::push::read_dir(dir)?;
    let (runtime, _threads) =
        Runtime::start(Config::default()).context("cannot start the runtime")?;
    lunet_lua::cluster::push::push(&runtime, &Arc::new(Settings::default()), url, &modules)?;
    runtime.stop();
    Ok(())
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
    /// The Lua script, or an app directory (its app.lua).
    script: PathBuf,
    /// key=value pairs the script reads with lunet.getenv.
    #[arg(value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// The Lua script (it calls lunet.listen), or an app directory: its
    /// app.lua is the script, its modules/ the module path, its data/ the
    /// data directory.
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
    /// Seconds that sessions get to finish after SIGINT/SIGTERM, and that
    /// the old hosts get after a reload (SIGHUP).
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Server processes, each with its own hosts, services and shared
    /// dicts, on shared listening sockets (SO_REUSEPORT), under a
    /// supervisor that restarts one that dies and sends SIGHUP, SIGINT and
    /// SIGTERM on to them (docs/operations.md) [default: one process, no
    /// supervisor].
    #[arg(long, value_name = "N")]
    processes: Option<usize>,
    /// Set by --processes: this is process INDEX of a supervisor.
    #[arg(long, hide = true, value_name = "INDEX")]
    supervised: Option<usize>,
    /// Set by --processes: bind listener KEY to ADDR (what process 0 bound
    /// where the script asks for port 0).
    #[arg(long, hide = true, value_name = "KEY=ADDR")]
    bind_as: Vec<String>,
}

fn main() -> ExitCode {
    allocator::set_up();
    let cli = Cli::parse();
    let result = match cli.command {
        LunetCommand::Serve(args) => serve(args),
        LunetCommand::Run(args) => run(args),
        LunetCommand::Load(args) => {
            // Errors inside a client script's own sessions are logged.
            init_logging("warn", None)
                .and_then(|()| lunet_connector::run(*args).map_err(Into::into))
        }
        LunetCommand::Check { script } => check(&script),
        LunetCommand::Modules(ModulesCommand::Push { dir, cluster }) => {
            push_modules(&dir, &cluster)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lunet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr; a supervised process starts each with
/// `prefix` (`[process 2] `), so the lines of N processes can be told apart.
fn init_logging(level: &str, prefix: Option<String>) -> Result<()> {
    let level: tracing::Level = level.parse().with_context(|| {
        format!("--log-level {level}: expected error, warn, info, debug or trace")
    })?;
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(logging::Stderr::new(prefix))
        .with_ansi(false)
        .init();
    Ok(())
}

/// The script of `path`: itself, or `path/app.lua` for an app directory.
fn app_script(path: &std::path::Path) -> PathBuf {
    if path.is_dir() {
        path.join("app.lua")
    } else {
        path.to_path_buf()
    }
}

fn load_script(path: &std::path::Path) -> Result<Script> {
    let source = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Script {
        path: path.display().to_string(),
        source,
    })
}

fn check(path: &std::path::Path) -> Result<()> {
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
    // Busy times are shown by the admin listener only.
    config.time_turns = engine.admin.admin.is_some();
    let beside = |name: &str| {
        script
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(name)
    };
    let module_path = if engine.modules.is_empty() {
        vec![beside("modules")]
    } else {
        engine.modules.clone()
    };
    let settings = Arc::new(Settings {
        max_line: engine.max_line.max(1),
        high_water: engine.high_water.max(1),
        write_timeout_ms: engine.write_timeout_ms,
        linger_ms: engine.linger_ms,
        lane_timeout_ms: engine.lane_timeout_ms,
        env: parse_env(env)?,
        script_dir: script.parent().map(|dir| dir.to_path_buf()),
        host_memory: (engine.host_memory > 0).then_some(engine.host_memory),
        module_path,
        data_dir: engine.data.clone().unwrap_or_else(|| beside("data")),
    });
    Ok((config, settings))
}

/// Starts the admin listener if `--admin` asks for one.
fn start_admin(
    runtime: &Runtime,
    args: &AdminArgs,
    health: &Arc<Health>,
    reload: Option<ReloadHook>,
) -> Result<Option<Admin>> {
    let Some(addr) = &args.admin else {
        return Ok(None);
    };
    let config = AdminConfig {
        addr: addr.clone(),
        public: args.admin_public,
        health: health.clone(),
        reload,
    };
    Ok(Some(admin::start(runtime, config)?))
}

fn run(args: RunArgs) -> Result<()> {
    init_logging(&args.engine.log_level, None)?;
    let path = app_script(&args.script);
    let script = load_script(&path)?;
    compile(&script)?;
    let signals = signals::block()?;
    let (config, settings) = engine(&args.engine, &path, &args.env)?;
    let (runtime, _threads) = Runtime::start(config).context("cannot start the runtime")?;
    idle::start(&runtime).context("cannot start the idle collector")?;
    let health = Arc::new(Health::new(HealthState::Starting));
    let _admin = start_admin(&runtime, &args.engine.admin, &health, None)?;
    join_cluster(&runtime, &settings, &args.engine.cluster)?;
    let mut main = launch(
        &runtime,
        &script,
        &settings,
        &["main".to_string()],
        &|_, _| Ok(()),
    )?;
    let id = main.ids()[0];
    // `lunet run` has nothing to reload: every signal it takes stops it.
    signals::forward(signals, |signal| {
        tracing::info!("{}: stopping", signals::name(signal));
        std::process::exit(128 + signal);
    })?;
    // Gone: the service exited (lunet.exit) before its main chunk returned.
    main.wait(None)
        .with_context(|| format!("{} failed to start", script.path))?;
    health.set(HealthState::Serving);
    runtime.wait_exit(id);
    runtime.stop();
    Ok(())
}

fn serve(mut args: ServeArgs) -> Result<()> {
    let grace = Duration::from_secs_f64(args.grace.max(0.0));
    if let (Some(count), None) = (args.processes, args.supervised) {
        init_logging(&args.engine.log_level, None)?;
        // A syntax error stops the command before any process starts.
        compile(&load_script(&app_script(&args.script))?)?;
        if count == 0 {
            bail!("--processes must be at least 1");
        }
        return processes::supervise(count, grace);
    }
    let prefix = args.supervised.map(|index| format!("[process {index}] "));
    init_logging(&args.engine.log_level, prefix)?;
    let mut reporter = match args.supervised {
        Some(index) => {
            if let Some(addr) = &args.engine.admin.admin {
                args.engine.admin.admin = Some(processes::admin_address(addr, index)?);
            }
            // Each process is a node of its own: NAME-I.
            if let Some(node) = &args.engine.cluster.node {
                args.engine.cluster.node = Some(format!("{node}-{index}"));
            }
            Some(processes::Reporter::open()?)
        }
        None => None,
    };
    let path = app_script(&args.script);
    let script = load_script(&path)?;
    compile(&script)?;
    let signals = signals::block()?;
    let (mut config, settings) = engine(&args.engine, &path, &args.env)?;
    config.max_conns = args.max_conns;
    config.reuse_port = reporter.is_some();
    config.bind_as = processes::parse_bind_as(&args.bind_as)?;
    let hosts = args.hosts.unwrap_or(config.workers * 2).max(1);

    let (runtime, threads) = Runtime::start(config).context("cannot start the runtime")?;
    idle::start(&runtime).context("cannot start the idle collector")?;
    let (sender, control) = mpsc::channel();
    let health = Arc::new(Health::new(HealthState::Starting));
    let reload: ReloadHook = {
        let sender = sender.clone();
        Arc::new(move |reply| {
            let _ = sender.send(Control::Reload(reply));
        })
    };
    let admin = start_admin(&runtime, &args.engine.admin, &health, Some(reload))?;
    join_cluster(&runtime, &settings, &args.engine.cluster)?;
    {
        let sender = sender.clone();
        signals::forward(signals, move |signal| {
            sender.send(Control::Signal(signal)).is_ok()
        })?;
    }
    // How each generation of hosts is started (at start and at reloads).
    let launch_hosts: serve::LaunchHosts = {
        let (runtime, settings) = (runtime.clone(), settings.clone());
        Arc::new(move |script: &Script, names: &[String]| {
            launch(&runtime, script, &settings, names, &|_, _| Ok(()))
        })
    };
    let server = Server {
        runtime,
        script: path,
        hosts,
        grace,
        health,
        admin,
        launch: launch_hosts,
        serving: Box::new(move |runtime: &Runtime| {
            if let Some(reporter) = reporter.as_mut() {
                reporter.serving(&runtime.listening());
            }
        }),
    };
    serve::serve(server, control, sender)?;
    drop(threads);
    Ok(())
}
