//! Harness shared by the integration tests: it starts the real `lunet`
//! binary on a script, learns the ephemeral ports from the log, keeps
//! collecting the log for assertions, and kills the child on drop.
//!
//! Every wait here is bounded by [`DEADLINE`] (or an explicit timeout); when
//! one runs out the test panics with the server's collected log, so a hang
//! becomes a failure that says what the server was doing.

// Each test file compiles this module on its own and uses a different part.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The bound on every wait of a test: start-up, a read, a log line, an exit.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The `lunet` binary that cargo built for these tests, or the one named by
/// `LUNET_BIN` (to run the same tests against a release build).
pub fn binary() -> String {
    std::env::var("LUNET_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lunet").to_string())
}

/// A script under `tests/scripts/`.
pub fn test_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name)
}

/// A script under `server-scripts/` (the ones that ship).
pub fn server_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("server-scripts")
        .join(name)
}

/// The server's stderr and stdout, line by line, shared with the reader
/// threads.
#[derive(Default)]
pub struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    /// Pipes that reached end of file (stderr and stdout: 2 when the child
    /// is gone).
    closed_pipes: usize,
}

impl Log {
    fn push(&self, line: String) {
        self.state.lock().unwrap().lines.push(line);
        self.changed.notify_all();
    }

    fn close_pipe(&self) {
        self.state.lock().unwrap().closed_pipes += 1;
        self.changed.notify_all();
    }

    /// Everything collected so far, one line per line.
    pub fn text(&self) -> String {
        self.state.lock().unwrap().lines.join("\n")
    }

    /// Waits (bounded) until both pipes are closed, for a child that has
    /// exited: the reader threads may not have taken its last lines out of
    /// the pipes yet. They close when the child (and any process that
    /// inherited them) is gone.
    pub fn wait_closed(&self) {
        self.wait_for(DEADLINE, |_| None::<()>);
    }

    /// Waits until `found` returns `Some` on the lines collected so far.
    /// Returns `None` when the deadline passes or both pipes are closed
    /// without a match.
    fn wait_for<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(value) = found(&state.lines) {
                return Some(value);
            }
            let now = Instant::now();
            if now >= deadline || state.closed_pipes >= 2 {
                return None;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

/// Removes ANSI colour sequences, in case the logger colours its output.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn collect(pipe: impl Read + Send + 'static, prefix: &'static str, log: Arc<Log>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buffer);
                    let line = strip_ansi(text.trim_end_matches(['\n', '\r']));
                    log.push(format!("{prefix}{line}"));
                }
            }
        }
        log.close_pipe();
    });
}

/// The port in a line that says `listening on 127.0.0.1:PORT`.
fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let address: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    address.parse::<SocketAddr>().ok().map(|a| a.port())
}

/// The distinct listening ports in the log, in the order they appeared.
fn ports_in(lines: &[String]) -> Vec<u16> {
    let mut ports = Vec::new();
    for port in lines.iter().filter_map(|l| listening_port(l)) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

fn spawn(script: &Path, args: &[&str]) -> (Child, Arc<Log>) {
    spawn_command("serve", script, args, None)
}

/// Starts `lunet COMMAND script args` with stdout and stderr collected into
/// one log (stdout lines prefixed with `stdout: `), its address space
/// limited to `address_space` bytes if given (`RLIMIT_AS`, as `ulimit -v`).
fn spawn_command(
    command: &str,
    script: &Path,
    args: &[&str],
    address_space: Option<u64>,
) -> (Child, Arc<Log>) {
    use std::os::unix::process::CommandExt;
    let binary = binary();
    let mut command_line = Command::new(&binary);
    if let Some(bytes) = address_space {
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: bytes as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            command_line.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command_line
        .arg(command)
        .arg(script)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let log = Arc::new(Log::default());
    collect(child.stderr.take().unwrap(), "", log.clone());
    collect(child.stdout.take().unwrap(), "stdout: ", log.clone());
    (child, log)
}

/// A running `lunet serve`, killed when dropped.
pub struct Server {
    child: Child,
    ports: Vec<u16>,
    log: Arc<Log>,
}

impl Server {
    /// Serves `script` with `args` plus `listen=127.0.0.1:0`, and waits for
    /// its first listener.
    #[track_caller]
    pub fn start(script: &Path, args: &[&str]) -> Server {
        Server::start_listeners(script, args, 1)
    }

    /// Like [`Server::start`], waiting until `count` distinct listening
    /// ports appear in the log.
    #[track_caller]
    pub fn start_listeners(script: &Path, args: &[&str], count: usize) -> Server {
        Server::start_with(script, args, count, None)
    }

    /// Like [`Server::start`], with the address space limited to
    /// `address_space` bytes (`ulimit -v`).
    #[track_caller]
    pub fn start_limited(script: &Path, args: &[&str], address_space: u64) -> Server {
        Server::start_with(script, args, 1, Some(address_space))
    }

    #[track_caller]
    fn start_with(
        script: &Path,
        args: &[&str],
        count: usize,
        address_space: Option<u64>,
    ) -> Server {
        let mut all: Vec<&str> = vec!["listen=127.0.0.1:0"];
        all.extend_from_slice(args);
        let (child, log) = spawn_command("serve", script, &all, address_space);
        let ports = log.wait_for(DEADLINE, |lines| {
            let ports = ports_in(lines);
            (ports.len() >= count).then_some(ports)
        });
        let mut server = Server {
            child,
            ports: Vec::new(),
            log,
        };
        match ports {
            Some(ports) => server.ports = ports,
            None => {
                let exit = match server.exited() {
                    Some(status) => format!("the server exited with {status}"),
                    None => format!("the server is still running after {DEADLINE:?}"),
                };
                server.fail(&format!(
                    "{count} listening port(s) never appeared in the log of {}; {exit}",
                    script.display()
                ))
            }
        }
        server
    }

    /// The first listening port.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// Every distinct listening port seen at start-up, in log order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.text()
    }

    pub fn shared_log(&self) -> Arc<Log> {
        self.log.clone()
    }

    /// Panics with `message` and the log collected so far.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        fail_with_log(&self.log, message)
    }

    /// A client connected to the first listener.
    pub fn client(&self) -> Client {
        self.client_on(self.port())
    }

    pub fn client_on(&self, port: u16) -> Client {
        Client::connect(port, self.log.clone())
    }

    /// Waits for a log line that contains `text`, and returns it.
    #[track_caller]
    pub fn wait_log(&self, text: &str) -> String {
        self.wait_log_where(&format!("a log line containing {text:?}"), |l| {
            l.contains(text)
        })
    }

    /// Waits for a log line for which `matches` holds, and returns it.
    #[track_caller]
    pub fn wait_log_where(&self, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
        let found = self
            .log
            .wait_for(DEADLINE, |lines| lines.iter().find(|l| matches(l)).cloned());
        match found {
            Some(line) => line,
            None => self.fail(&format!("waited {DEADLINE:?} for {what}")),
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // own child, which is not reaped before `wait`, so it is not reused.
        let result = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", self.child.id());
    }

    /// The exit status if the server has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits (bounded by `timeout`) for the server to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                // A log read after this holds everything the server wrote.
                self.log.wait_closed();
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("the server did not exit within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server's resident set (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The server's peak resident set so far (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// A `KEY: N kB` line of `/proc/PID/status`.
    fn status_kib(&self, key: &str) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {path}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn fail_with_log(log: &Log, message: &str) -> ! {
    panic!(
        "{message}\n----- server log -----\n{}\n----------------------",
        log.text()
    )
}

/// Runs `lunet serve script args` to its exit (bounded by [`DEADLINE`]);
/// returns the status and everything it wrote to stderr and stdout.
pub fn run_to_exit(script: &Path, args: &[&str]) -> (ExitStatus, String) {
    let (mut child, log) = spawn(script, args);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            log.wait_closed();
            return (status, log.text());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            fail_with_log(
                &log,
                &format!("{} did not exit within {DEADLINE:?}", script.display()),
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a read saw at the end of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// An orderly close (FIN).
    Closed,
    /// The server reset the connection (RST).
    Reset,
}

/// A blocking loopback client whose every read and write is bounded by
/// [`DEADLINE`]; its panics carry the server's log.
pub struct Client {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    log: Arc<Log>,
}

impl Client {
    #[track_caller]
    pub fn connect(port: u16, log: Arc<Log>) -> Client {
        let stream = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => stream,
            Err(e) => fail_with_log(&log, &format!("connect to 127.0.0.1:{port}: {e}")),
        };
        Client::from_stream(stream, log)
    }

    pub fn from_stream(stream: TcpStream, log: Arc<Log>) -> Client {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
            log,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        fail_with_log(&self.log, message)
    }

    #[track_caller]
    pub fn send(&mut self, data: impl AsRef<[u8]>) {
        if let Err(e) = self.stream.write_all(data.as_ref()) {
            self.fail(&format!("write to the server: {e}"));
        }
    }

    /// Half-closes the connection: the server reads end of file.
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// One line without its `\n`, or `Err(End)` at the end of the
    /// connection. Panics on a timeout.
    #[track_caller]
    pub fn try_line(&mut self) -> Result<String, End> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => Err(End::Closed),
            Ok(_) if line.last() == Some(&b'\n') => {
                line.pop();
                Ok(String::from_utf8_lossy(&line).into_owned())
            }
            Ok(_) => self.fail(&format!(
                "connection closed in the middle of a line: {:?}",
                String::from_utf8_lossy(&line)
            )),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Err(End::Reset),
            Err(e) => self.fail(&format!("reading a line: {e}")),
        }
    }

    /// One line without its `\n`; panics at the end of the connection.
    #[track_caller]
    pub fn line(&mut self) -> String {
        match self.try_line() {
            Ok(line) => line,
            Err(end) => self.fail(&format!("expected a line, the connection ended: {end:?}")),
        }
    }

    /// Exactly `n` bytes.
    #[track_caller]
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut data = vec![0; n];
        if let Err(e) = self.reader.read_exact(&mut data) {
            self.fail(&format!("reading {n} bytes: {e}"));
        }
        data
    }

    /// Waits for the end of the connection and says how it ended; panics
    /// if data arrives instead.
    #[track_caller]
    pub fn end(&mut self) -> End {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => End::Closed,
            Ok(_) => {
                let mut rest = Vec::new();
                // Bounded by the read timeout; only for the message.
                let _ = self.reader.read_to_end(&mut rest);
                self.fail(&format!(
                    "expected the connection to end, got data: {:?}",
                    String::from_utf8_lossy(&[&byte[..], &rest].concat())
                ))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => End::Reset,
            Err(e) => self.fail(&format!("waiting for the connection to end: {e}")),
        }
    }

    /// Everything until the end of the connection.
    #[track_caller]
    pub fn rest(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        match self.reader.read_to_end(&mut data) {
            Ok(_) => data,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => data,
            Err(e) => self.fail(&format!(
                "reading to the end: {e} (got {} bytes)",
                data.len()
            )),
        }
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

/// `text`, cut to its first 60 characters when longer, for messages.
pub fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// Connects with a short bounded wait and reports refusal instead of
/// panicking.
pub fn try_connect(port: u16) -> io::Result<TcpStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_secs(2))
}

/// A port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts `lunet run script args` with piped output collected into a log.
fn spawn_run(script: &Path, args: &[&str]) -> (Child, Arc<Log>) {
    spawn_command("run", script, args, None)
}

/// A finished `lunet run`: its exit status and everything it wrote
/// (stdout lines prefixed with `stdout: `, stderr lines as they are).
pub struct Ran {
    pub status: ExitStatus,
    pub log: String,
}

impl Ran {
    /// This run, which must have exited with status 0: otherwise the test
    /// fails with `message` and the output.
    #[track_caller]
    pub fn must_succeed(self, message: &str) -> Ran {
        if !self.status.success() {
            self.fail(message);
        }
        self
    }

    /// Panics with `message` and the whole output.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n----- lunet run output ({}) -----\n{}\n----------------------",
            self.status, self.log
        )
    }

    /// The value of the first stdout line `key=value`; panics (with the
    /// output) when the script never printed `key`.
    #[track_caller]
    pub fn value(&self, key: &str) -> String {
        let prefix = format!("stdout: {key}=");
        match self.log.lines().find_map(|l| l.strip_prefix(&prefix)) {
            Some(value) => value.to_string(),
            None => self.fail(&format!("the script printed no line {key}=...")),
        }
    }

    /// Asserts that `key` printed exactly `expected`.
    #[track_caller]
    pub fn expect(&self, key: &str, expected: &str) {
        let value = self.value(key);
        if value != expected {
            self.fail(&format!("{key}: expected {expected:?}, got {value:?}"));
        }
    }

    /// Asserts that `key` printed a value starting with `start` and
    /// containing every one of `parts`.
    #[track_caller]
    pub fn expect_parts(&self, key: &str, start: &str, parts: &[&str]) {
        let value = self.value(key);
        if !value.starts_with(start) || parts.iter().any(|p| !value.contains(p)) {
            self.fail(&format!(
                "{key}: expected a value starting with {start:?} and containing {parts:?}, got {value:?}"
            ));
        }
    }

    /// Asserts that a line of the output contains `text`.
    #[track_caller]
    pub fn expect_log(&self, text: &str) {
        if !self.log.contains(text) {
            self.fail(&format!("no output line contains {text:?}"));
        }
    }
}

/// Runs `lunet run script args` to its exit, bounded by `timeout` (the
/// child is killed and the test fails past it).
#[track_caller]
pub fn run_script(script: &Path, args: &[&str], timeout: Duration) -> Ran {
    let (mut child, log) = spawn_run(script, args);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            log.wait_closed();
            return Ran {
                status,
                log: log.text(),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            fail_with_log(
                &log,
                &format!(
                    "lunet run {} did not exit within {timeout:?}",
                    script.display()
                ),
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("lunet-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// A path inside the directory.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` to its end with `input` on its stdin (kept open half a
/// second after it is written: `openssl s_client` ends when stdin does),
/// bounded by [`DEADLINE`]; the child is killed and the test fails past it.
#[track_caller]
pub fn run_with_input(command: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
        thread::sleep(Duration::from_millis(500));
    });
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("collect output"),
        Err(_) => {
            // SAFETY: kill(2) of the child started here.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{command:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// A `redis-server --save '' --appendonly no` on a free loopback port,
/// killed on drop (Debian's `redis-server`; the tests that use it fail
/// and say how to install it when it is missing).
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        // The free port may be taken between the probe and the bind; try
        // again with another one.
        for _ in 0..5 {
            let dir = TempDir::new("redis");
            let port = closed_port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir", &dir.file("")])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server: {e}; apt-get install redis-server")
                });
            let deadline = Instant::now() + DEADLINE;
            while Instant::now() < deadline {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                if let Ok(mut stream) = try_connect(port) {
                    let mut answer = [0u8; 7];
                    if stream.write_all(b"PING\r\n").is_ok()
                        && stream.read_exact(&mut answer).is_ok()
                        && &answer == b"+PONG\r\n"
                    {
                        return RedisServer {
                            child,
                            port,
                            _dir: dir,
                        };
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on a free port within {DEADLINE:?} (5 tries)");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kill -9`: the server dies without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection to `tests/scripts/steps.lua`: each step is a line of Lua
/// run in the server's session, answered with what it returned,
/// described (see the script).
pub struct Steps {
    client: Client,
}

impl Steps {
    /// `steps.lua` in one host with `args` (`key=value` pairs it reads with
    /// `getenv`, engine options).
    pub fn start(args: &[&str]) -> (Server, Steps) {
        let mut all = vec!["--hosts", "1"];
        all.extend_from_slice(args);
        let server = Server::start(&test_script("steps.lua"), &all);
        let client = server.client();
        (server, Steps { client })
    }

    /// Runs `lua` and returns what it returned, described.
    #[track_caller]
    pub fn run(&mut self, lua: &str) -> String {
        self.start_step(lua);
        self.client.line()
    }

    /// Runs `lua`; fails the test (with the server's log) unless it
    /// returned `expected`.
    #[track_caller]
    pub fn expect(&mut self, lua: &str, expected: &str) {
        let got = self.run(lua);
        if got != expected {
            self.client
                .fail(&format!("{lua}\n  expected: {expected}\n  got:      {got}"));
        }
    }

    /// Sends `lua` without waiting for its answer (it may wait for
    /// something the test does next); [`Steps::line`] reads the answer.
    pub fn start_step(&mut self, lua: &str) {
        self.client.send(format!("{lua}\n"));
    }

    /// The answer of a step started with [`Steps::start_step`].
    #[track_caller]
    pub fn line(&mut self) -> String {
        self.client.line()
    }
}
