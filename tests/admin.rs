//! The admin listener (`--admin`): the console over a real socket, every
//! command and bad ones, clients that leave mid-command, and `/metrics` and
//! `/health` over curl (docs/operations.md).

mod common;

use common::{run_to_exit, test_script, Client, Server, DEADLINE};
use std::collections::HashMap;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// `tests/scripts/admin.lua` with an admin listener on an ephemeral port.
fn start(args: &[&str]) -> Admin {
    let mut all = vec!["--admin", "127.0.0.1:0", "--workers", "2", "--hosts", "2"];
    all.extend_from_slice(args);
    let server = Server::start_listeners(&test_script("admin.lua"), &all, 2);
    let line = server.wait_log("admin console listening on ");
    let port = port_in(&line).unwrap_or_else(|| server.fail("no admin port in the log"));
    let host = server
        .ports()
        .iter()
        .copied()
        .find(|p| *p != port)
        .unwrap_or_else(|| server.fail("no host port in the log"));
    server.wait_log("serving ");
    Admin { server, port, host }
}

fn port_in(line: &str) -> Option<u16> {
    line.rsplit(':').next()?.trim().parse().ok()
}

struct Admin {
    server: Server,
    port: u16,
    host: u16,
}

impl Admin {
    fn console(&self) -> Console {
        Console(self.server.client_on(self.port))
    }

    fn host_client(&self) -> Client {
        self.server.client_on(self.host)
    }

    /// `curl -i` on the admin port: status, headers (lower-case names), body.
    fn curl(&self, args: &[&str], path: &str) -> (u16, HashMap<String, String>, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let output = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10"])
            .args(args)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| self.server.fail(&format!("cannot run curl: {e}")));
        if !output.status.success() {
            self.server.fail(&format!(
                "curl {url} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| self.server.fail(&format!("no head in {text:?}")));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| self.server.fail(&format!("no status in {head:?}")));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        (status, headers, body.to_string())
    }

    fn metrics(&self) -> Vec<(String, f64)> {
        let (status, headers, body) = self.curl(&[], "/metrics");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        check_exposition(&body).unwrap_or_else(|e| self.server.fail(&format!("{e}\n{body}")))
    }
}

/// A console connection.
struct Console(Client);

impl Console {
    /// Sends `line` and reads the answer up to its `<CMD ...>` line: the
    /// lines before it, and whether it was OK.
    fn command(&mut self, line: &str) -> (Vec<String>, bool) {
        self.0.send(format!("{line}\n"));
        self.answer()
    }

    fn answer(&mut self) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        loop {
            let line = self.0.line();
            match line.as_str() {
                "<CMD OK>" => return (lines, true),
                "<CMD Error>" => return (lines, false),
                _ => lines.push(line),
            }
        }
    }

    #[track_caller]
    fn ok(&mut self, line: &str) -> Vec<String> {
        let (lines, ok) = self.command(line);
        if !ok {
            self.0
                .fail(&format!("{line}: expected <CMD OK>, got {lines:?}"));
        }
        lines
    }

    #[track_caller]
    fn error(&mut self, line: &str) -> String {
        let (lines, ok) = self.command(line);
        if ok {
            self.0
                .fail(&format!("{line}: expected <CMD Error>, got {lines:?}"));
        }
        lines.join("\n")
    }
}

/// The `key=value` fields of a console line.
fn fields(line: &str) -> HashMap<&str, &str> {
    line.split(' ').filter_map(|f| f.split_once('=')).collect()
}

/// The line of `list` for service `:id`.
fn listed(lines: &[String], id: &str) -> Option<String> {
    let prefix = format!(":{id} ");
    lines.iter().find(|l| l.starts_with(&prefix)).cloned()
}

/// Checks the text exposition format 0.0.4 line by line: `# HELP name
/// text` and `# TYPE name counter|gauge` before the samples of `name`;
/// samples `name{label="value",...} number`; names `lunet_...`. Returns
/// the samples.
fn check_exposition(text: &str) -> Result<Vec<(String, f64)>, String> {
    let name_ok = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    if !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let (mut helped, mut typed) = (Vec::new(), HashMap::new());
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !name_ok(name) || help.is_empty() || helped.contains(&name) {
                return Err(format!("bad HELP line: {line:?}"));
            }
            helped.push(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            if parts.len() != 2 || !name_ok(parts[0]) || !["counter", "gauge"].contains(&parts[1]) {
                return Err(format!("bad TYPE line: {line:?}"));
            }
            if typed.insert(parts[0], parts[1]).is_some() {
                return Err(format!("TYPE given twice: {line:?}"));
            }
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .ok_or_else(|| format!("a sample without a value: {line:?}"))?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, Some(labels)),
                None => (series, None),
            };
            if !name_ok(name) || !name.starts_with("lunet_") {
                return Err(format!("bad metric name: {line:?}"));
            }
            let Some(kind) = typed.get(name) else {
                return Err(format!("a sample before its TYPE: {line:?}"));
            };
            if !helped.contains(&name) {
                return Err(format!("a sample before its HELP: {line:?}"));
            }
            if *kind == "counter" && !name.ends_with("_total") {
                return Err(format!("a counter not named _total: {line:?}"));
            }
            if let Some(labels) = labels {
                let inner = labels
                    .strip_suffix('}')
                    .ok_or_else(|| format!("labels not closed: {line:?}"))?;
                for pair in inner.split(',') {
                    let (label, quoted) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("bad label: {line:?}"))?;
                    let value = quoted
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .ok_or_else(|| format!("label value not quoted: {line:?}"))?;
                    if !name_ok(label) || value.contains(['"', '\\', '\n']) {
                        return Err(format!("bad label: {line:?}"));
                    }
                }
            }
            let number: f64 = value
                .parse()
                .map_err(|_| format!("not a number: {line:?}"))?;
            if *kind == "counter" && number < 0.0 {
                return Err(format!("a negative counter: {line:?}"));
            }
            samples.push((series.to_string(), number));
        }
    }
    Ok(samples)
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:?}"))
}

/// The sum of every sample of `name` (each label set).
fn sum(samples: &[(String, f64)], name: &str) -> f64 {
    let labelled = format!("{name}{{");
    samples
        .iter()
        .filter(|(s, _)| s == name || s.starts_with(&labelled))
        .map(|(_, v)| *v)
        .sum()
}

#[test]
fn every_command_answers() {
    let admin = start(&[]);
    // A host's connection: the handles of a host and of its worker.
    let mut host = admin.host_client();
    host.send("handle\n");
    let handles = host.line();
    let (host_id, worker_id) = handles.split_once(' ').unwrap();
    let mut console = admin.console();

    let list = console.ok("list");
    for id in [host_id, worker_id] {
        let line = listed(&list, id).unwrap_or_else(|| panic!("no :{id} in {list:?}"));
        let f = fields(&line);
        for key in ["modules", "memory", "mailbox", "messages", "cpu"] {
            assert!(f.contains_key(key), "no {key} in {line}");
        }
        assert!(f["memory"].parse::<u64>().unwrap() > 0, "{line}");
        assert!(f["cpu"].ends_with('s'), "{line}");
    }
    assert!(list.iter().any(|l| l.contains(" admin ")), "{list:?}");
    assert!(list.iter().any(|l| l.contains(" host-0 ")), "{list:?}");
    assert!(list.iter().any(|l| l.contains(" host-1 ")), "{list:?}");

    let stat = console.ok("stat");
    for key in [
        "services ",
        "connections ",
        "sessions ",
        "messages_sent ",
        "lane_queued ",
        "slice_warnings ",
        "worker 1 turns=",
    ] {
        assert!(
            stat.iter().any(|l| l.starts_with(key)),
            "no {key} in {stat:?}"
        );
    }

    let mem = console.ok("mem");
    assert!(mem.last().unwrap().starts_with("total "), "{mem:?}");
    assert!(mem.iter().any(|l| l.starts_with(&format!(":{host_id} "))));

    let gc = console.ok("gc");
    let line = listed(&gc, host_id).unwrap_or_else(|| panic!("no :{host_id} in {gc:?}"));
    let f = fields(&line);
    let (before, after): (u64, u64) = (f["before"].parse().unwrap(), f["after"].parse().unwrap());
    assert!(before > 0 && after > 0, "{line}");
    assert!(gc.last().unwrap().starts_with("total before="), "{gc:?}");

    let info = console.ok(&format!("info :{worker_id}"));
    assert!(info.contains(&format!("handle :{worker_id}")), "{info:?}");
    assert!(info.iter().any(|l| l.starts_with("messages_handled ")));

    let help = console.ok("help");
    for command in ["list", "stat", "mem", "gc", "kill", "info", "reload"] {
        assert!(help.iter().any(|l| l.starts_with(command)), "{help:?}");
    }

    // kill: the worker goes; calls to it then fail at the host.
    assert_eq!(
        console.ok(&format!("kill {worker_id}")),
        [format!("killed :{worker_id}")]
    );
    let deadline = Instant::now() + DEADLINE;
    while listed(&console.ok("list"), worker_id).is_some() {
        assert!(
            Instant::now() < deadline,
            "the killed service is still listed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    host.send("hello\n");
    assert_eq!(
        host.end(),
        common::End::Closed,
        "the echo needs the dead worker"
    );
    admin.server.wait_log("is dead");

    // reload: new hosts, and the console says so.
    let reload = console.ok("reload");
    assert!(reload[0].starts_with("reloaded "), "{reload:?}");
}

#[test]
fn bad_commands_get_an_error_line_and_the_console_goes_on() {
    let admin = start(&[]);
    let mut console = admin.console();
    assert!(console.error("bogus").contains("unknown command 'bogus'"));
    assert!(console.error("kill").contains("expected a service handle"));
    assert!(console.error("kill :x").contains("not a service handle"));
    assert!(console.error("kill 999999").contains("no service :999999"));
    assert!(console.error("info 999999").contains("no service :999999"));
    assert!(console
        .error("list everything")
        .contains("takes no argument"));
    // No runtime runs a module kv (tests/model.rs reloads one).
    assert!(console
        .error("reload kv")
        .contains("no runtime has loaded module kv"));
    // The console itself cannot be killed from itself.
    let list = console.ok("list");
    let own = list.iter().find(|l| l.contains(" admin ")).unwrap();
    let own_id = own.split(' ').next().unwrap();
    assert!(console
        .error(&format!("kill {own_id}"))
        .contains("this console"));
    // Empty lines are no command; control characters are escaped back.
    console.0.send("\n\r\n");
    assert!(console.error("\u{1b}[2J").contains("\\u{1b}[2J"));
    assert!(!console.ok("stat").is_empty());
    // A line past the limit is refused and the connection closed.
    console.0.send("x".repeat(5000));
    let (lines, ok) = console.answer();
    assert!(!ok && lines[0].contains("longer than"), "{lines:?}");
    console.0.end();
    // The server and other consoles are fine.
    assert!(!admin.console().ok("list").is_empty());
}

#[test]
fn clients_that_leave_mid_command_do_not_disturb_the_server() {
    let admin = start(&[]);
    // Leaves while gc waits for the services, while reload runs, half-way
    // through a line, and before reading a long answer.
    for sent in ["gc\n", "reload\n", "li", "list\nlist\nlist\nstat\nmem\n"] {
        let console = admin.console();
        let mut client = console.0;
        client.send(sent);
        drop(client);
    }
    // A client that half-closes after its command still gets the answer.
    let mut console = admin.console();
    console.0.send("stat\n");
    console.0.shutdown_write();
    let (lines, ok) = console.answer();
    assert!(ok && lines[0].starts_with("services "), "{lines:?}");
    console.0.end();
    // Everything still answers.
    let mut console = admin.console();
    console.ok("gc");
    let reload = console.ok("reload");
    assert!(reload[0].starts_with("reloaded "), "{reload:?}");
    let mut host = admin.host_client();
    host.send("hello\n");
    assert_eq!(host.line(), "hello");
    admin.server.wait_log("generation 1 drained");
}

#[test]
fn gc_reports_a_service_busy_in_a_long_slice_as_not_answering() {
    let admin = start(&["--slice-kill", "0"]);
    let mut host = admin.host_client();
    host.send("handle\n");
    let handles = host.line();
    let (_, worker_id) = handles.split_once(' ').unwrap();
    host.send("spin\n");
    assert_eq!(host.line(), "spinning");
    let mut console = admin.console();
    let gc = console.ok("gc");
    let line = listed(&gc, worker_id).unwrap_or_else(|| panic!("no :{worker_id} in {gc:?}"));
    assert!(line.contains("no answer"), "{gc:?}");
    // The others answered.
    assert!(gc.iter().any(|l| l.contains(" host-0 before=")), "{gc:?}");
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let admin = start(&[]);
    let before = admin.metrics();
    for name in [
        "lunet_connections",
        "lunet_sessions",
        "lunet_messages_sent_total",
        "lunet_messages_handled_total",
        "lunet_mailbox_events",
        "lunet_lane_queue_length",
        "lunet_lane_waits_total",
        "lunet_slice_warnings_total",
        "lunet_slice_kills_total",
        "lunet_accepts_refused_total",
        "lunet_services",
        "lunet_worker_busy_seconds_total{worker=\"0\"}",
        "lunet_worker_busy_seconds_total{worker=\"1\"}",
    ] {
        sample(&before, name);
    }
    assert_eq!(sample(&before, "lunet_serving"), 1.0);

    let mut clients: Vec<Client> = (0..4).map(|_| admin.host_client()).collect();
    for round in 0..25 {
        for client in &mut clients {
            client.send(format!("hello {round}\n"));
            assert_eq!(client.line(), format!("hello {round}"));
        }
    }
    let after = admin.metrics();
    let grew = |name: &str, by: f64| {
        let (was, is) = (sum(&before, name), sum(&after, name));
        assert!(is >= was + by, "{name}: {was} -> {is}, expected +{by}");
    };
    grew("lunet_connections_accepted_total", 4.0);
    // A call and its answer per line.
    grew("lunet_messages_sent_total", 200.0);
    grew("lunet_messages_handled_total", 200.0);
    grew("lunet_events_handled_total", 200.0);
    grew("lunet_worker_turns_total", 200.0);
    assert!(
        sum(&after, "lunet_worker_busy_seconds_total")
            > sum(&before, "lunet_worker_busy_seconds_total")
    );
    assert!(sample(&after, "lunet_connections") >= 4.0);
    assert!(sample(&after, "lunet_lua_memory_bytes") > 0.0);
}

#[test]
fn health_is_ok_while_serving_and_503_while_draining() {
    let mut admin = start(&["--grace", "5"]);
    let (status, headers, body) = admin.curl(&[], "/health");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));
    let (status, _, body) = admin.curl(&["-I"], "/health");
    assert_eq!((status, body.as_str()), (200, ""), "HEAD has no body");
    let (status, _, _) = admin.curl(&[], "/nowhere");
    assert_eq!(status, 404);
    let (status, headers, _) = admin.curl(&["-X", "POST"], "/metrics");
    assert_eq!(status, 405);
    assert_eq!(headers.get("allow").map(String::as_str), Some("GET, HEAD"));

    // A session in flight keeps the server draining; the admin serves on.
    let mut client = admin.host_client();
    client.send("work 2000\n");
    assert_eq!(client.line(), "started");
    admin.server.signal(libc::SIGTERM);
    admin.server.wait_log("no longer accepting");
    let (status, _, body) = admin.curl(&[], "/health");
    assert_eq!((status, body.as_str()), (503, "draining\n"));
    assert_eq!(sample(&admin.metrics(), "lunet_serving"), 0.0);
    assert_eq!(client.line(), "done");
    let status = admin.server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", admin.server.log());
    // The console's own connection did not hold the server up.
    assert!(admin.server.log().contains("all connections closed"));
}

#[test]
fn a_bad_http_request_gets_400_and_a_console_line_is_not_http() {
    let admin = start(&[]);
    let mut client = admin.server.client_on(admin.port);
    client.send("GET /metrics HTTP/1.1\r\nbad header line\r\n\r\n");
    let status = client.line();
    assert!(status.starts_with("HTTP/1.1 400 "), "{status}");
    client.rest();
    // HTTP/1.0 without a Host works.
    let mut client = admin.server.client_on(admin.port);
    client.send("GET /health HTTP/1.0\r\n\r\n");
    let text = String::from_utf8(client.rest()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nok\n"),
        "{text}"
    );
}

#[test]
fn the_admin_address_must_be_loopback_unless_told_otherwise() {
    let (status, output) = run_to_exit(
        &test_script("admin.lua"),
        &["listen=127.0.0.1:0", "--admin", "0.0.0.0:0"],
    );
    assert!(!status.success(), "{status}\n{output}");
    assert!(output.contains("--admin-public"), "{output}");
    let (status, output) = run_to_exit(
        &test_script("admin.lua"),
        &["listen=127.0.0.1:0", "--admin", "nowhere"],
    );
    assert!(!status.success(), "{status}\n{output}");
    assert!(output.contains("--admin nowhere"), "{output}");
}

#[test]
fn lunet_run_has_a_console_that_does_not_reload() {
    let mut run = Run::start(&["--admin", "127.0.0.1:0"]);
    let mut console = Console(Client::connect(run.admin_port, run.log.clone()));
    // The console starts before the script's service.
    let deadline = Instant::now() + DEADLINE;
    while !console.ok("list").iter().any(|l| l.contains(" main ")) {
        assert!(
            Instant::now() < deadline,
            "the service `main` is never listed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(console.error("reload").contains("only `lunet serve`"));
    let health = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(format!("http://127.0.0.1:{}/health", run.admin_port))
        .output()
        .expect("cannot run curl");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "200");
    run.stop();
}

/// `lunet run admin.lua` (which serves until killed); `log` is empty, for
/// the harness's clients.
struct Run {
    child: std::process::Child,
    admin_port: u16,
    log: std::sync::Arc<common::Log>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(common::binary())
            .arg("run")
            .arg(test_script("admin.lua"))
            .arg("listen=127.0.0.1:0")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cannot start lunet run");
        let stderr = child.stderr.take().unwrap();
        let (lines, found) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let log = std::sync::Arc::new(common::Log::default());
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        let admin_port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match found.recv_timeout(left) {
                Ok(line) => {
                    let port = line
                        .contains("admin console listening on ")
                        .then(|| port_in(&line))
                        .flatten();
                    seen.push(line);
                    if let Some(port) = port {
                        break port;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "lunet run never said where its console is:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        Run {
            child,
            admin_port,
            log,
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_admin_answers_when_the_server_is_full_and_counts_refusals() {
    let admin = start(&["--max-conns", "1"]);
    let mut first = admin.host_client();
    first.send("hello\n");
    assert_eq!(first.line(), "hello");
    // The cap is reached: the next client is accepted and closed at once.
    let mut refused = admin.host_client();
    refused.end();
    // The admin's own connections are not refused, and count the refusal.
    let mut console = admin.console();
    assert!(console.ok("stat").iter().any(|l| l == "refused 1"));
    let metrics = admin.metrics();
    assert_eq!(sample(&metrics, "lunet_accepts_refused_total"), 1.0);
    admin.server.wait_log("connection limit reached");
}

#[test]
fn a_call_to_the_console_is_refused_not_left_waiting() {
    let admin = start(&[]);
    let mut console = admin.console();
    let list = console.ok("list");
    let line = list
        .iter()
        .find(|l| l.contains(" admin "))
        .unwrap_or_else(|| panic!("no admin in {list:?}"));
    let handle = line
        .trim_start_matches(':')
        .split(' ')
        .next()
        .expect("a handle");
    let mut host = admin.host_client();
    host.send(format!("call {handle}\n"));
    let answer = host.line();
    assert!(
        answer.starts_with("error ") && answer.contains("the admin console takes no calls"),
        "{answer}"
    );
    // The console serves on.
    console.ok("stat");
}
