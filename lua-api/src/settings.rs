//! The settings every service of one server shares: bounds and the
//! command line's environment. [`Settings::default`] is where each default
//! is written (the command line takes its defaults from it).

use std::collections::HashMap;

/// Bounds and settings shared by every service of a server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default longest line `readline` accepts (and `readuntil` scans).
    pub max_line: usize,
    /// Unsent bytes of a connection past which its writers wait for the
    /// peer (and a writer that cannot wait is refused: "overloaded").
    pub high_water: usize,
    /// How long a writer waits for room on a socket without a timeout of
    /// its own (`sock:settimeout`) before it gets "overloaded" (0 = no
    /// limit).
    pub write_timeout_ms: u64,
    /// How long a closed connection may take to flush its output and drain
    /// unread input before it is dropped.
    pub linger_ms: u64,
    /// How long a lane call may wait for a queue slot (0 = no limit).
    pub lane_timeout_ms: u64,
    /// The command line's key=value pairs (`lunet.getenv`).
    pub env: HashMap<String, String>,
    /// Where `lunet.spawn` looks for scripts not found from the current
    /// directory (the directory of the script given on the command line).
    pub script_dir: Option<std::path::PathBuf>,
    /// Bytes each VM started from the command line's script (a host of
    /// `lunet serve`, the first service of `lunet run`) may allocate beyond
    /// its fresh VM, and hold in shared dicts (`None`: no bound).
    pub host_memory: Option<usize>,
    /// Where runtimes find their modules, first match wins (`--modules`;
    /// the command line's default is `modules/` next to the script).
    pub module_path: Vec<std::path::PathBuf>,
    /// Where runtimes save their state and keep their storage (`--data`;
    /// the command line's default is `data/` next to the script).
    pub data_dir: std::path::PathBuf,
}

/// The default of `--host-memory`: far above what a host needs, far below
/// what takes a machine down; the services it spawns inherit it.
pub const DEFAULT_HOST_MEMORY: usize = 1024 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_line: 64 * 1024,
            high_water: 1024 * 1024,
            write_timeout_ms: 60_000,
            linger_ms: 10_000,
            lane_timeout_ms: 30_000,
            env: HashMap::new(),
            script_dir: None,
            host_memory: Some(DEFAULT_HOST_MEMORY),
            module_path: vec!["modules".into()],
            data_dir: "data".into(),
        }
    }
}
