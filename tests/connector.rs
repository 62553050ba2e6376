//! `lunet load` (the connector) against the real servers, over loopback:
//! each profile's results checked, the JSON's counts adding up, errors
//! counted when the server dies, scripted clients and their errors,
//! `--source` and `--hold`; and against small misbehaving servers written
//! here (one that closes at once, one that streams an endless body), with
//! a signal, or with stdout closed. No test asserts a speed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{binary, closed_port, server_script, test_script, Server};

/// The bound on a whole `lunet load` run in these tests (runs are ~1 s).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What a finished `lunet load` left behind.
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn text(&self) -> String {
        format!(
            "status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    fn assert_success(&self) {
        assert!(self.status.success(), "lunet load failed:\n{}", self.text());
    }
}

/// A running `lunet load`, its output collected by threads.
struct Load {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(args: &[&str]) -> Load {
        let mut child = Command::new(binary())
            .arg("load")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start lunet load");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out_pipe, err_pipe) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let lines = stdout.clone();
        let out_reader = thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let text = stderr.clone();
        let err_reader = thread::spawn(move || {
            let mut all = String::new();
            let _ = BufReader::new(err_pipe).read_to_string(&mut all);
            text.lock().unwrap().push_str(&all);
        });
        Load {
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Waits (bounded) until a stdout line contains `text`.
    fn wait_stdout(&mut self, text: &str) {
        let deadline = Instant::now() + RUN_LIMIT;
        while Instant::now() < deadline {
            if self.stdout.lock().unwrap().iter().any(|l| l.contains(text)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        panic!(
            "no stdout line with {text:?}: {:?}",
            self.stdout.lock().unwrap()
        );
    }

    fn finish(self) -> Outcome {
        self.finish_watching(|_| {})
    }

    /// Like [`Load::finish`], calling `watch` with the pid while it runs.
    fn finish_watching(mut self, mut watch: impl FnMut(u32)) -> Outcome {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            watch(self.child.id());
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("lunet load did not stop within {RUN_LIMIT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stdout = self.stdout.lock().unwrap().join("\n");
        let stderr = self.stderr.lock().unwrap().clone();
        Outcome {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn load(args: &[&str]) -> Outcome {
    Load::start(args).finish()
}

fn address(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Sends `signal` to the running `lunet load`.
fn signal(load: &Load, signal: i32) {
    // SAFETY: kill(2) on our own child, which is not reaped before `finish`.
    let result = unsafe { libc::kill(load.child.id() as libc::pid_t, signal) };
    assert_eq!(result, 0, "kill({}, {signal})", load.child.id());
}

/// The peak resident set (VmHWM) of process `pid` in KiB, if it is alive.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Writes a client script for `--script` and returns its path.
fn script_file(name: &str, source: &str) -> PathBuf {
    let path = output_file(name);
    std::fs::write(&path, source).unwrap();
    path
}

/// A loopback server written here: each accepted connection is handed to
/// `serve` on a thread of its own; stops accepting when dropped.
struct TestServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    fn start(serve: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let (count, done) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        stream.set_nonblocking(false).unwrap();
                        let (serve, done) = (serve.clone(), done.clone());
                        thread::spawn(move || serve(stream, &done));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        TestServer {
            port,
            accepted,
            stop,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A fresh path for an output file of this test.
fn output_file(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("connector");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

// ---------------------------------------------------------------- JSON

/// Just enough JSON to check the connector's output: a strict parser.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value()?;
        parser.space();
        if parser.at != parser.bytes.len() {
            return Err(format!("trailing characters at {}", parser.at));
        }
        Ok(value)
    }

    #[track_caller]
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(map) => map
                .get(key)
                .unwrap_or_else(|| panic!("no key {key:?} in {self:?}")),
            _ => panic!("{key:?}: not an object: {self:?}"),
        }
    }

    #[track_caller]
    fn number(&self) -> f64 {
        match self {
            Json::Number(n) => *n,
            _ => panic!("not a number: {self:?}"),
        }
    }

    #[track_caller]
    fn count(&self, key: &str) -> u64 {
        let n = self.get(key).number();
        assert!(n >= 0.0 && n.fract() == 0.0, "{key} = {n} is not a count");
        n as u64
    }

    #[track_caller]
    fn list(&self) -> &[Json] {
        match self {
            Json::List(items) => items,
            _ => panic!("not a list: {self:?}"),
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), String> {
        self.space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", byte as char, self.at))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.space();
        match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut map = BTreeMap::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b'}') {
                    self.at += 1;
                    return Ok(Json::Object(map));
                }
                loop {
                    self.space();
                    let Json::Text(key) = self.value()? else {
                        return Err(format!("object key is not a string at {}", self.at));
                    };
                    self.eat(b':')?;
                    let value = self.value()?;
                    if map.insert(key.clone(), value).is_some() {
                        return Err(format!("duplicate key {key}"));
                    }
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(map));
                        }
                        _ => return Err(format!("expected ',' or '}}' at {}", self.at)),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if self.bytes.get(self.at) == Some(&b']') {
                    self.at += 1;
                    return Ok(Json::List(items));
                }
                loop {
                    items.push(self.value()?);
                    self.space();
                    match self.bytes.get(self.at) {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::List(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at {}", self.at)),
                    }
                }
            }
            Some(b'"') => {
                self.at += 1;
                let mut text = String::new();
                loop {
                    let Some(&byte) = self.bytes.get(self.at) else {
                        return Err("unterminated string".into());
                    };
                    self.at += 1;
                    match byte {
                        b'"' => return Ok(Json::Text(text)),
                        b'\\' => {
                            let escape = *self.bytes.get(self.at).ok_or("bad escape")?;
                            self.at += 1;
                            match escape {
                                b'"' => text.push('"'),
                                b'\\' => text.push('\\'),
                                b'/' => text.push('/'),
                                b'n' => text.push('\n'),
                                b'r' => text.push('\r'),
                                b't' => text.push('\t'),
                                b'u' => {
                                    let hex = std::str::from_utf8(
                                        self.bytes.get(self.at..self.at + 4).ok_or("bad \\u")?,
                                    )
                                    .map_err(|e| e.to_string())?;
                                    let code =
                                        u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                    text.push(char::from_u32(code).unwrap_or('?'));
                                    self.at += 4;
                                }
                                other => return Err(format!("bad escape \\{}", other as char)),
                            }
                        }
                        byte if byte < 0x20 => return Err("control character in string".into()),
                        _ => {
                            // Copy the whole UTF-8 sequence.
                            let start = self.at - 1;
                            let mut end = self.at;
                            while end < self.bytes.len() && (self.bytes[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            text.push_str(
                                std::str::from_utf8(&self.bytes[start..end])
                                    .map_err(|e| e.to_string())?,
                            );
                            self.at = end;
                        }
                    }
                }
            }
            Some(b't') if self.bytes[self.at..].starts_with(b"true") => {
                self.at += 4;
                Ok(Json::Bool(true))
            }
            Some(b'f') if self.bytes[self.at..].starts_with(b"false") => {
                self.at += 5;
                Ok(Json::Bool(false))
            }
            Some(b'n') if self.bytes[self.at..].starts_with(b"null") => {
                self.at += 4;
                Ok(Json::Null)
            }
            Some(_) => {
                let start = self.at;
                while self.at < self.bytes.len()
                    && matches!(
                        self.bytes[self.at],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap();
                text.parse::<f64>()
                    .map(Json::Number)
                    .map_err(|_| format!("bad value at {start}: {text:?}"))
            }
            None => Err("unexpected end".into()),
        }
    }
}

/// Reads and parses a `--json` file.
#[track_caller]
fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Json::parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// Checks that the JSON's counts add up: errors by kind to the total, the
/// per-second rows to the totals, the histogram to the requests.
#[track_caller]
fn check_sums(json: &Json) {
    let errors = json.get("errors");
    let kinds: u64 = [
        "connect", "read", "write", "timeout", "closed", "protocol", "script",
    ]
    .iter()
    .map(|k| errors.count(k))
    .sum();
    assert_eq!(
        kinds,
        errors.count("total"),
        "error kinds vs total: {json:?}"
    );
    let rows = json.get("intervals").list();
    assert!(!rows.is_empty(), "no per-second rows: {json:?}");
    let requests: u64 = rows.iter().map(|r| r.count("requests")).sum();
    assert_eq!(
        requests,
        json.count("requests"),
        "rows vs requests: {json:?}"
    );
    let row_errors: u64 = rows.iter().map(|r| r.count("errors")).sum();
    assert_eq!(
        row_errors,
        errors.count("total"),
        "rows vs errors: {json:?}"
    );
    assert_eq!(
        json.get("latency_us").count("samples"),
        json.count("requests"),
        "histogram samples vs requests"
    );
}

// ---------------------------------------------------------------- profiles

#[test]
fn echo_profile_verifies_the_bytes_and_the_json_adds_up() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("echo.json");
    let hdr = output_file("echo.hlog");
    let outcome = load(&[
        "-p",
        "echo",
        "-c",
        "4",
        "-t",
        "2",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--size",
        "100",
        "--pipeline",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--hdr-log",
        hdr.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.count("requests") > 0, "{}", outcome.text());
    assert_eq!(json.get("errors").count("total"), 0, "{}", outcome.text());
    assert_eq!(json.get("profile"), &Json::Text("echo".into()));
    // Sent bytes come back whole: every byte out is a byte in.
    assert!(json.count("bytes_in") > 0);
    assert!(json.count("bytes_out") >= json.count("bytes_in"));
    // The summary prints the quantiles.
    for quantile in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        assert!(outcome.stdout.contains(quantile), "{}", outcome.text());
    }
    // The interval log: headers and one compressed histogram per line.
    let log = std::fs::read_to_string(&hdr).unwrap();
    assert!(log.contains("#[StartTime:"), "{log}");
    let histograms = log.lines().filter(|l| l.contains(",HISTF")).count();
    assert!(histograms >= 1, "{log}");
}

#[test]
fn echo_profile_counts_a_wrong_echo_as_a_protocol_error() {
    let server = Server::start(&test_script("connector_bad_echo.lua"), &[]);
    let json = output_file("bad-echo.json");
    let outcome = load(&[
        "-c",
        "2",
        "-d",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    // Nothing succeeded: the run fails and says why.
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stderr.contains("echo differs"),
        "{}",
        outcome.text()
    );
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.get("errors").count("protocol") > 0, "{json:?}");
    assert_eq!(json.count("requests"), 0);
}

#[test]
fn http_profile_counts_status_200() {
    let server = Server::start(&server_script("http_hello.lua"), &[]);
    let json = output_file("http.json");
    let outcome = load(&[
        "-p",
        "http",
        "-c",
        "4",
        "-d",
        "1s",
        "--pipeline",
        "4",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    let requests = json.count("requests");
    assert!(requests > 0);
    assert_eq!(json.get("statuses").count("200"), requests, "{json:?}");
    assert_eq!(json.get("errors").count("total"), 0, "{}", outcome.text());
    assert!(
        outcome.stdout.contains("statuses 200: "),
        "{}",
        outcome.text()
    );
}

#[test]
fn http_profile_posts_a_body() {
    let server = Server::start(&server_script("http_hello.lua"), &[]);
    let json = output_file("http-post.json");
    let outcome = load(&[
        "-p",
        "http",
        "--method",
        "POST",
        "--body-size",
        "3000",
        "-H",
        "X-Test: 1",
        "-c",
        "2",
        "-d",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    assert_eq!(json.get("statuses").count("200"), json.count("requests"));
}

/// A RESP server: `server-scripts/kv.lua` when it ships, else Debian's
/// redis-server (apt-get install -y redis-server).
enum RespServer {
    Lunet(Server),
    Redis(Child, u16),
}

impl RespServer {
    fn start() -> RespServer {
        let kv = server_script("kv.lua");
        if kv.exists() {
            return RespServer::Lunet(Server::start(&kv, &[]));
        }
        let port = closed_port();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the resp test needs server-scripts/kv.lua or redis-server, and neither is \
                     there (redis-server: {e}); install it with `apt-get install -y redis-server`"
                )
            });
        let server = RespServer::Redis(child, port);
        let deadline = Instant::now() + common::DEADLINE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn port(&self) -> u16 {
        match self {
            RespServer::Lunet(server) => server.port(),
            RespServer::Redis(_, port) => *port,
        }
    }
}

impl Drop for RespServer {
    fn drop(&mut self) {
        if let RespServer::Redis(child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value the resp profile stores under key number `key`.
fn resp_value(key: u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| b'a' + ((key + i as u64) % 26) as u8)
        .collect()
}

#[test]
fn resp_profile_sets_and_gets_verified_values() {
    let server = RespServer::start();
    let json = output_file("resp.json");
    let outcome = load(&[
        "-p",
        "resp",
        "-c",
        "4",
        "-d",
        "1s",
        "--ratio",
        "1:1",
        "--keys",
        "20",
        "--value-size",
        "16",
        "--key-prefix",
        "lunet-test:",
        "--pipeline",
        "4",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    let resp = json.get("resp");
    assert!(resp.count("sets") > 0 && resp.count("hits") > 0, "{json:?}");
    // Every GET that found a value was checked against the value SET.
    assert_eq!(
        json.get("errors").count("protocol"),
        0,
        "{}",
        outcome.text()
    );
    assert_eq!(
        resp.count("sets") + resp.count("hits") + resp.count("misses"),
        json.count("requests")
    );

    // And the server holds the value: GET one key ourselves.
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let key = "lunet-test:7";
    let command = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
    stream.write_all(command.as_bytes()).unwrap();
    let value = resp_value(7, 16);
    let mut expected = b"$16\r\n".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    let mut reply = vec![0; expected.len()];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reply),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn raw_profile_reads_replies_to_a_delimiter() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("raw.json");
    let outcome = load(&[
        "-p",
        "raw",
        "--payload-text",
        r"ping one\nping two\n",
        "--until",
        r"two\n",
        "-c",
        "2",
        "-d",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.count("requests") > 0);
    assert_eq!(json.get("errors").count("total"), 0, "{}", outcome.text());
}

#[test]
fn open_loop_reports_corrected_and_uncorrected_latency() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("open.json");
    let outcome = load(&[
        "-R",
        "500",
        "-c",
        "5",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    assert!(outcome.stdout.contains("uncorrected"), "{}", outcome.text());
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.count("requests") > 0);
    assert_eq!(
        json.get("uncorrected_latency_us").count("samples"),
        json.count("requests")
    );
}

// ---------------------------------------------------------------- errors

#[test]
fn errors_are_counted_when_the_server_is_killed_mid_run() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("killed.json");
    let mut run = Load::start(&[
        "-c",
        "4",
        "-d",
        "3s",
        "--timeout",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    // Some load first (the first progress line), then the server dies.
    run.wait_stdout("req/s");
    server.signal(libc::SIGKILL);
    let outcome = run.finish();
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.count("requests") > 0, "{}", outcome.text());
    let errors = json.get("errors");
    assert!(errors.count("total") > 0, "{json:?}");
    // Reconnects to a dead server fail.
    assert!(errors.count("connect") > 0, "{json:?}");
    assert!(
        outcome.stdout.contains("first connect error"),
        "{}",
        outcome.text()
    );
}

#[test]
fn nothing_listening_fails_with_connect_errors() {
    let port = closed_port();
    let outcome = load(&["-c", "2", "-d", "300ms", &address(port)]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stderr.contains("no request completed"),
        "{}",
        outcome.text()
    );
    assert!(
        outcome.stdout.contains("connect 127.0.0.1"),
        "{}",
        outcome.text()
    );
}

#[test]
fn bad_options_are_reported() {
    let outcome = load(&["-d", "5x", "127.0.0.1:1"]);
    assert!(!outcome.status.success());
    assert!(
        outcome.stderr.contains("bad duration"),
        "{}",
        outcome.text()
    );
    let outcome = load(&["--source", "127.0.0.9-127.0.0.1", "127.0.0.1:1"]);
    assert!(!outcome.status.success());
    assert!(outcome.stderr.contains("--source"), "{}", outcome.text());
}

// ---------------------------------------------------------------- scripts

#[test]
fn a_script_drives_the_load() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("script.json");
    let outcome = load(&[
        "--script",
        test_script("connector_echo_client.lua").to_str().unwrap(),
        "--set",
        "size=40",
        "-c",
        "4",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.count("requests") > 0, "{}", outcome.text());
    assert_eq!(json.get("errors").count("total"), 0, "{}", outcome.text());
    assert_eq!(json.get("script_error"), &Json::Null);
}

#[test]
fn a_script_error_names_the_script() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let outcome = load(&[
        "--script",
        test_script("connector_broken_client.lua").to_str().unwrap(),
        "-c",
        "2",
        "-d",
        "1s",
        &address(server.port()),
    ]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stderr.contains("connector_broken_client.lua:8:")
            && outcome.stderr.contains("attempt to index"),
        "{}",
        outcome.text()
    );

    let outcome = load(&[
        "--script",
        test_script("connector_toplevel_error.lua")
            .to_str()
            .unwrap(),
        "-d",
        "5s",
        &address(server.port()),
    ]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stderr.contains("connector_toplevel_error.lua")
            && outcome.stderr.contains("no config for this client"),
        "{}",
        outcome.text()
    );
}

// ---------------------------------------------------------------- connections

#[test]
fn source_binds_the_given_local_addresses() {
    let server = Server::start(&test_script("connector_peers.lua"), &[]);
    let outcome = load(&[
        "-c",
        "4",
        "-d",
        "500ms",
        "--source",
        "127.0.0.2-127.0.0.3",
        &address(server.port()),
    ]);
    outcome.assert_success();
    server.wait_log("peer 127.0.0.2:");
    server.wait_log("peer 127.0.0.3:");
    assert!(
        !server.log().contains("peer 127.0.0.1:"),
        "a connection did not bind its source:\n{}",
        server.log()
    );
}

#[test]
fn a_script_binds_the_source_addresses() {
    let server = Server::start(&test_script("connector_peers.lua"), &[]);
    let outcome = load(&[
        "--script",
        test_script("connector_echo_client.lua").to_str().unwrap(),
        "-c",
        "4",
        "-d",
        "500ms",
        "--source",
        "127.0.0.4-127.0.0.5",
        &address(server.port()),
    ]);
    outcome.assert_success();
    server.wait_log("peer 127.0.0.4:");
    server.wait_log("peer 127.0.0.5:");
    assert!(
        !server.log().contains("peer 127.0.0.1:"),
        "a scripted connection did not bind its source:\n{}",
        server.log()
    );
}

#[test]
fn hold_keeps_idle_connections_up() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("hold.json");
    let outcome = load(&[
        "--hold",
        "50",
        "--connect-rate",
        "1000",
        "--source",
        "127.0.0.1,127.0.0.5",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    assert!(
        outcome.stdout.contains("held 50 of 50 connections up"),
        "{}",
        outcome.text()
    );
    let json = read_json(&json);
    assert_eq!(json.count("up_at_end"), 50);
    assert_eq!(json.get("errors").count("total"), 0);
}

// ---------------------------------------------------------------- misbehaviour

#[test]
fn a_script_that_raises_on_every_request_counts_script_errors_and_fails() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let script = script_file(
        "raises.lua",
        r#"
local load = require "load"
load.run(function(sock)
    load.request(function()
        error("boom on request")
    end)
end)
"#,
    );
    let json = output_file("raises.json");
    let outcome = load(&[
        "--script",
        script.to_str().unwrap(),
        "-c",
        "2",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    // Not a quiet success: a failing exit, the error on stderr...
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stderr.contains("boom on request"),
        "{}",
        outcome.text()
    );
    // ... counted in the summary and the JSON, and the run went on.
    assert!(
        outcome.stdout.contains("first script error: ")
            && outcome.stdout.contains("boom on request"),
        "{}",
        outcome.text()
    );
    let json = read_json(&json);
    check_sums(&json);
    let errors = json.get("errors");
    assert!(errors.count("script") >= 2, "{json:?}");
    assert_eq!(errors.count("total"), errors.count("script"), "{json:?}");
    assert_eq!(json.count("requests"), 0);
    assert!(json.count("reconnects") > 0, "{json:?}");
    match json.get("script_error") {
        Json::Text(text) => assert!(text.contains("boom on request"), "{text}"),
        other => panic!("script_error: {other:?}"),
    }
}

#[test]
fn scripted_runs_count_the_bytes_they_move() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("script-bytes.json");
    let outcome = load(&[
        "--script",
        test_script("connector_echo_client.lua").to_str().unwrap(),
        "--set",
        "size=40",
        "-c",
        "2",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    let (bytes_in, bytes_out) = (json.count("bytes_in"), json.count("bytes_out"));
    assert!(bytes_in > 0, "{json:?}");
    // Echoed lines: every byte read was written first. Each request moves
    // a 40-byte line and its newline each way.
    assert!(bytes_out >= bytes_in, "{json:?}");
    assert_eq!(bytes_in % 41, 0, "{json:?}");
    assert!(bytes_in >= 41 * json.count("requests"), "{json:?}");
}

#[test]
fn a_handler_that_never_yields_does_not_hold_the_run() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let script = script_file(
        "loops.lua",
        r#"
local load = require "load"
load.run(function(sock)
    local n = 0
    while true do n = n + 1 end
end)
"#,
    );
    let json = output_file("loops.json");
    // Bounded by RUN_LIMIT: before the fix it never ended.
    let outcome = load(&[
        "--script",
        script.to_str().unwrap(),
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stdout.contains("never yields"),
        "{}",
        outcome.text()
    );
    let json = read_json(&json);
    check_sums(&json);
    assert!(json.get("errors").count("script") >= 1, "{json:?}");
    assert_eq!(json.get("stopped_by"), &Json::Null);
}

#[test]
fn http_profile_skips_an_endless_body_in_bounded_memory() {
    // Declares a 40 GB body and streams it until the client goes away.
    let server = TestServer::start(|mut stream, stop| {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => request.push(byte[0]),
                _ => return,
            }
        }
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 40000000000\r\n\r\n";
        if stream.write_all(head).is_err() {
            return;
        }
        let body = vec![b'x'; 64 * 1024];
        while !stop.load(Ordering::Relaxed) && stream.write_all(&body).is_ok() {}
    });
    let json = output_file("endless-body.json");
    let mut peak_kib = 0;
    let outcome = Load::start(&[
        "-p",
        "http",
        "-c",
        "1",
        "-t",
        "1",
        "-d",
        "2s",
        "--timeout",
        "30s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port),
    ])
    .finish_watching(|pid| {
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
        thread::sleep(Duration::from_millis(10));
    });
    // The body was read (and counted), not kept: memory stays at the
    // read buffer's scale while megabytes go by.
    let json = read_json(&json);
    let read = json.count("bytes_in");
    assert!(
        peak_kib < 100 * 1024,
        "peak RSS {peak_kib} KiB after reading {read} bytes of body"
    );
    assert!(read > 8 << 20, "only {read} bytes read: {json:?}");
    // The reply never completes: nothing succeeded.
    assert!(!outcome.status.success(), "{}", outcome.text());
    check_sums(&json);
    assert_eq!(json.count("requests"), 0, "{json:?}");
    assert_eq!(json.get("errors").count("protocol"), 0, "{json:?}");
}

#[test]
fn a_server_that_closes_at_once_gets_reconnects_with_backoff() {
    let server = TestServer::start(|stream, _| drop(stream));
    let json = output_file("closing.json");
    let outcome = load(&[
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port),
    ]);
    // Without a back-off this was thousands of connects per second per
    // connection; with it, at most a few dozen in a second.
    assert!(server.accepted() < 100, "{} accepted", server.accepted());
    assert!(!outcome.status.success(), "{}", outcome.text());
    let json = read_json(&json);
    check_sums(&json);
    let reconnects = json.count("reconnects");
    assert!(reconnects > 0 && reconnects < 100, "{json:?}");
    assert!(json.get("errors").count("total") > 0, "{json:?}");
    assert!(
        outcome.stdout.contains(&format!("reconnects {reconnects}")),
        "{}",
        outcome.text()
    );

    // Scripted clients back off too.
    let before = server.accepted();
    let outcome = load(&[
        "--script",
        test_script("connector_echo_client.lua").to_str().unwrap(),
        "-c",
        "2",
        "-t",
        "1",
        "-d",
        "1s",
        &address(server.port),
    ]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    let accepted = server.accepted() - before;
    assert!(accepted > 0 && accepted < 100, "{accepted} accepted");
}

#[test]
fn sigint_prints_the_partial_report_and_writes_the_json() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("sigint.json");
    let mut run = Load::start(&[
        "-c",
        "2",
        "-d",
        "20s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    run.wait_stdout("req/s");
    signal(&run, libc::SIGINT);
    let outcome = run.finish();
    assert!(!outcome.status.success(), "{}", outcome.text());
    assert!(
        outcome.stdout.contains("stopped by SIGINT") && outcome.stdout.contains(" requests in "),
        "{}",
        outcome.text()
    );
    assert!(
        outcome.stderr.contains("stopped by SIGINT"),
        "{}",
        outcome.text()
    );
    let json = read_json(&json);
    check_sums(&json);
    assert_eq!(json.get("stopped_by"), &Json::Text("SIGINT".into()));
    assert!(json.count("requests") > 0, "{json:?}");
    assert!(json.get("elapsed_s").number() < 20.0, "{json:?}");
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let server = Server::start(&server_script("echo.lua"), &[]);
    let json = output_file("epipe.json");
    let mut child = Command::new(binary())
        .args(["load", "-c", "2", "-d", "20s", "--json"])
        .arg(&json)
        .arg(address(server.port()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start lunet load");
    // Read the banner, then go away as `head -1` would.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    assert!(banner.starts_with("lunet load echo"), "{banner}");
    drop(stdout);
    let mut stderr = child.stderr.take().unwrap();
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lunet load did not stop within {RUN_LIMIT:?} after stdout closed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut errors = String::new();
    stderr.read_to_string(&mut errors).unwrap();
    assert!(
        status.success() && !errors.contains("panicked"),
        "status {status}, stderr:\n{errors}"
    );
    let json = read_json(&json);
    check_sums(&json);
    assert_eq!(json.get("stopped_by"), &Json::Text("stdout closed".into()));
}

// ---------------------------------------------------------------- load.http

/// A scripted client on load.http against lunet.http
/// (`tests/scripts/http_server.lua`): the default request comes from
/// --method, --path, --header and --body; statuses and bytes are reported.
#[test]
fn a_script_speaks_http_with_load_http() {
    let server = Server::start_listeners(&test_script("http_server.lua"), &[], 2);
    let json = output_file("script-http.json");
    let outcome = load(&[
        "--script",
        test_script("connector_http_client.lua").to_str().unwrap(),
        "--set",
        "expect=posted body",
        "--method",
        "POST",
        "--path",
        "/body",
        "-H",
        "X-Test: 1",
        "--body",
        "posted body",
        "-c",
        "4",
        "-d",
        "1s",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    check_sums(&json);
    let requests = json.count("requests");
    assert!(requests > 0, "{}", outcome.text());
    assert_eq!(json.get("statuses").count("200"), requests, "{json:?}");
    assert_eq!(json.get("errors").count("total"), 0, "{}", outcome.text());
    // Each response is ~100 bytes, each request ~90: both counted.
    assert!(json.count("bytes_in") >= requests * 80, "{json:?}");
    assert!(json.count("bytes_out") >= requests * 80, "{json:?}");
    assert!(
        outcome.stdout.contains("statuses 200: "),
        "{}",
        outcome.text()
    );

    // Requests built from options; non-2xx statuses are counted, not errors.
    let json = output_file("script-http-404.json");
    let outcome = load(&[
        "--script",
        test_script("connector_http_client.lua").to_str().unwrap(),
        "--set",
        "path=/status/404",
        "-c",
        "2",
        "-d",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port()),
    ]);
    outcome.assert_success();
    let json = read_json(&json);
    assert!(json.get("statuses").count("404") > 0, "{json:?}");
    assert_eq!(json.get("statuses").count("404"), json.count("requests"));
}

#[test]
fn load_http_counts_a_garbage_response_as_a_protocol_error() {
    let server = TestServer::start(|mut stream, _| {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 || stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").is_err() {
                return;
            }
        }
    });
    let json = output_file("script-http-garbage.json");
    let outcome = load(&[
        "--script",
        test_script("connector_http_client.lua").to_str().unwrap(),
        "-c",
        "1",
        "-d",
        "500ms",
        "--json",
        json.to_str().unwrap(),
        &address(server.port),
    ]);
    assert!(!outcome.status.success(), "{}", outcome.text());
    let json = read_json(&json);
    assert!(json.get("errors").count("protocol") > 0, "{json:?}");
    let first = json.get("first_errors").get("protocol");
    assert!(
        matches!(first, Json::Text(text) if text.contains("invalid response")),
        "{json:?}"
    );
    assert!(server.accepted() > 0);
}
