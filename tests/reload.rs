//! Reload without refusing anyone: SIGHUP and the console's `reload` start
//! new hosts on the script as it is now; old connections finish their
//! requests on the old hosts, new ones land on the new hosts, and no
//! connection is refused. A broken script leaves the old hosts serving.

mod common;

use common::{test_script, Client, Server, TempDir, DEADLINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A server on a copy of `tests/scripts/reload.lua` that the test rewrites.
struct Reloading {
    server: Server,
    _dir: TempDir,
    script: String,
    host: u16,
    admin: u16,
}

impl Reloading {
    fn start(args: &[&str]) -> Reloading {
        let dir = TempDir::new("reload");
        let script = dir.file("reload.lua");
        std::fs::copy(test_script("reload.lua"), &script).unwrap();
        let mut all = vec!["--admin", "127.0.0.1:0", "--hosts", "2", "--grace", "5"];
        all.extend_from_slice(args);
        let server = Server::start_listeners(std::path::Path::new(&script), &all, 2);
        let admin_line = server.wait_log("admin console listening on ");
        let admin: u16 = admin_line.rsplit(':').next().unwrap().parse().unwrap();
        let host = *server.ports().iter().find(|p| **p != admin).unwrap();
        server.wait_log("serving ");
        Reloading {
            server,
            _dir: dir,
            script,
            host,
            admin,
        }
    }

    /// Rewrites the script: `version`, and `before` run by its main chunk.
    fn rewrite(&self, version: &str, before: &str) {
        let text = std::fs::read_to_string(test_script("reload.lua"))
            .unwrap()
            .replace(
                "local VERSION = \"v1\"",
                &format!("local VERSION = {version:?}"),
            )
            .replace("-- BEFORE", before);
        // Written whole, then renamed: a reload never reads half a file.
        let partial = format!("{}.partial", self.script);
        std::fs::write(&partial, text).unwrap();
        std::fs::rename(&partial, &self.script).unwrap();
    }

    fn http(&self) -> Http {
        Http::connect(self.host, &self.server)
    }

    /// Sends SIGHUP and waits until generation `number` serves.
    fn sighup(&self, number: u32) {
        self.server.signal(libc::SIGHUP);
        self.server
            .wait_log(&format!("generation {number} serves with"));
    }

    /// The console's `reload`: its answer lines and whether it was OK.
    fn console_reload(&self) -> (String, bool) {
        let mut console = self.server.client_on(self.admin);
        console.send("reload\n");
        let mut lines = Vec::new();
        loop {
            let line = console.line();
            match line.as_str() {
                "<CMD OK>" => return (lines.join("\n"), true),
                "<CMD Error>" => return (lines.join("\n"), false),
                _ => lines.push(line),
            }
        }
    }
}

/// A keep-alive HTTP/1.1 client.
struct Http {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

/// One answer: its body and whether it closes the connection.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    body: String,
    close: bool,
}

impl Http {
    fn connect(port: u16, server: &Server) -> Http {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| server.fail(&format!("connect: {e}")));
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Http {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    fn send(&mut self, path: &str) {
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    }

    fn answer(&mut self) -> std::io::Result<Answer> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if !line.starts_with("HTTP/1.1 200 OK") {
            return Err(std::io::Error::other(format!("status line {line:?}")));
        }
        let (mut length, mut close) = (0, false);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("Content-Length: ") {
                length = value.parse().unwrap();
            }
            close |= header.eq_ignore_ascii_case("connection: close");
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Answer {
            body: String::from_utf8(body).unwrap(),
            close,
        })
    }

    fn get(&mut self, path: &str) -> Answer {
        self.send(path);
        self.answer().expect("an answer")
    }

    /// True once the server has closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

fn v(version: &str, close: bool) -> Answer {
    Answer {
        body: format!("{version}\n"),
        close,
    }
}

/// New clients, one request each, for as long as it runs: every connect
/// must succeed and every request be answered.
struct Stream {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<(usize, Vec<String>, Vec<String>)>,
}

impl Stream {
    fn start(port: u16) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let (mut answered, mut versions, mut errors) = (0, Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let outcome = TcpStream::connect(("127.0.0.1", port)).and_then(|stream| {
                        stream.set_read_timeout(Some(DEADLINE))?;
                        let mut http = Http {
                            reader: BufReader::new(stream.try_clone()?),
                            stream,
                        };
                        http.send("/");
                        http.answer()
                    });
                    match outcome {
                        Ok(answer) => {
                            answered += 1;
                            if versions.last() != Some(&answer.body) {
                                versions.push(answer.body);
                            }
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (answered, versions, errors)
            })
        };
        Stream { stop, thread }
    }

    /// Stops; returns how many were answered and the versions seen in order.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (answered, versions, errors) = self.thread.join().unwrap();
        assert!(errors.is_empty(), "refused or cut: {errors:?}");
        (answered, versions)
    }
}

#[test]
fn keep_alive_clients_finish_on_old_hosts_and_new_clients_land_on_new_ones() {
    let reloading = Reloading::start(&[]);
    let mut idle: Vec<Http> = (0..4).map(|_| reloading.http()).collect();
    for client in &mut idle {
        assert_eq!(client.get("/"), v("v1", false));
    }
    let mut slow = reloading.http();
    assert_eq!(slow.get("/"), v("v1", false));
    let stream = Stream::start(reloading.host);

    reloading.rewrite("v2", "");
    slow.send("/slow");
    reloading.sighup(1);
    reloading.server.wait_log("SIGHUP: reloading ");
    // The request in flight finishes on its old host, which closes after it.
    assert_eq!(slow.answer().unwrap(), v("v1", true));
    assert!(slow.closed());
    // Idle keep-alive connections get their next request answered by the
    // old host, with `Connection: close`.
    for client in &mut idle {
        assert_eq!(client.get("/"), v("v1", true));
        assert!(client.closed());
    }
    // New connections land on the new hosts.
    for _ in 0..4 {
        assert_eq!(reloading.http().get("/"), v("v2", false));
    }
    reloading.server.wait_log("generation 0 drained");
    let (answered, versions) = stream.finish();
    assert!(answered > 0);
    assert_eq!(
        versions.last().map(String::as_str),
        Some("v2\n"),
        "{versions:?}"
    );
}

#[test]
fn a_broken_script_keeps_the_old_hosts_serving() {
    let reloading = Reloading::start(&[]);
    let mut client = reloading.http();
    assert_eq!(client.get("/"), v("v1", false));

    // A syntax error: the log says why, the old hosts serve on.
    reloading.rewrite("v2", "local = 1");
    reloading.server.signal(libc::SIGHUP);
    let failed = reloading.server.wait_log("reload of ");
    assert!(
        failed.contains("keeps serving") && failed.contains("reload.lua:"),
        "{failed}"
    );
    assert_eq!(client.get("/"), v("v1", false));

    // A main chunk that raises, through the console: its answer says why.
    reloading.rewrite("v3", "error('no database today')");
    let (answer, ok) = reloading.console_reload();
    assert!(!ok && answer.contains("no database today"), "{answer}");
    assert_eq!(client.get("/"), v("v1", false));
    assert_eq!(reloading.http().get("/"), v("v1", false));

    // A main chunk that exits.
    reloading.rewrite("v4", "lunet.exit()");
    let (answer, ok) = reloading.console_reload();
    assert!(!ok && answer.contains("reload failed"), "{answer}");

    // Fixed: the next reload works, the failed hosts are gone.
    reloading.rewrite("v5", "");
    let (answer, ok) = reloading.console_reload();
    assert!(ok && answer.contains("generation 4 serves"), "{answer}");
    assert_eq!(client.get("/"), v("v1", true));
    assert_eq!(reloading.http().get("/"), v("v5", false));
    let mut console = reloading.server.client_on(reloading.admin);
    console.send("list\n");
    let mut hosts = Vec::new();
    loop {
        let line = console.line();
        if line.starts_with("<CMD") {
            break;
        }
        let name = line.split(' ').nth(1).unwrap_or("").to_string();
        if name.starts_with("host-") {
            hosts.push(name);
        }
    }
    // The two hosts of generation 4, and those of generation 0 until they
    // have drained: none of the failed generations.
    assert!(
        hosts.iter().all(|h| h.ends_with(".4") || !h.contains('.')),
        "{hosts:?}"
    );
    assert!(hosts.contains(&"host-0.4".to_string()), "{hosts:?}");
}

#[test]
fn repeated_reloads_refuse_no_one() {
    let reloading = Reloading::start(&[]);
    let stream = Stream::start(reloading.host);
    for version in 2..=6 {
        reloading.rewrite(&format!("v{version}"), "");
        reloading.sighup(version - 1);
    }
    // Reloads asked for while one runs are done after it.
    reloading.rewrite("v7", "");
    for _ in 0..3 {
        reloading.server.signal(libc::SIGHUP);
    }
    let deadline = Instant::now() + DEADLINE;
    while reloading.http().get("/") != v("v7", false) {
        assert!(Instant::now() < deadline, "v7 never served");
        thread::sleep(Duration::from_millis(10));
    }
    let (answered, versions) = stream.finish();
    assert!(answered > 0);
    // Versions only move forward.
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(versions, sorted, "{versions:?}");
    for generation in 0..5 {
        reloading
            .server
            .wait_log(&format!("generation {generation} drained"));
    }
}

#[test]
fn sigterm_during_a_reload_stops_cleanly() {
    let mut reloading = Reloading::start(&[]);
    let mut client = reloading.http();
    assert_eq!(client.get("/"), v("v1", false));
    // The new hosts take 5 s to start: SIGTERM comes meanwhile.
    reloading.rewrite("v2", "lunet.sleep(5000)");
    reloading.server.signal(libc::SIGHUP);
    reloading.server.wait_log("SIGHUP: reloading");
    client.send("/slow");
    reloading.server.signal(libc::SIGTERM);
    // The request in flight is answered (on the draining old host).
    assert_eq!(client.answer().unwrap(), v("v1", true));
    let status = reloading.server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", reloading.server.log());
    let log = reloading.server.log();
    assert!(log.contains("no longer accepting"), "{log}");
    assert!(!log.contains("generation 1 serves"), "{log}");
}

#[test]
fn without_on_shutdown_hooks_idle_connections_are_closed_at_a_reload() {
    // lifecycle.lua has no hooks: the old host ends reads that wait on an
    // empty buffer, as at SIGTERM.
    let dir = TempDir::new("reload-lifecycle");
    let script = dir.file("lifecycle.lua");
    std::fs::copy(test_script("lifecycle.lua"), &script).unwrap();
    let server = Server::start(std::path::Path::new(&script), &["--hosts", "1"]);
    server.wait_log("serving ");
    let mut idle = server.client();
    let mut busy = server.client();
    busy.send("work 300\n");
    assert_eq!(busy.line(), "started");
    server.signal(libc::SIGHUP);
    server.wait_log("generation 1 serves with");
    // The idle connection is closed, the busy one finishes its work.
    assert_eq!(idle.end(), common::End::Closed);
    assert_eq!(busy.line(), "done");
    let mut fresh: Client = server.client();
    fresh.send("work 0\n");
    assert_eq!(fresh.line(), "started");
    assert_eq!(fresh.line(), "done");
    server.wait_log("generation 0 drained");
}

#[test]
fn the_shipped_http_server_closes_keep_alive_connections_while_draining() {
    let server = Server::start(
        &common::server_script("http_hello.lua"),
        &["--hosts", "1", "--grace", "5"],
    );
    server.wait_log("serving ");
    let hello = |close| Answer {
        body: "hello world".into(),
        close,
    };
    let mut client = Http::connect(server.port(), &server);
    assert_eq!(client.get("/"), hello(false));
    server.signal(libc::SIGHUP);
    server.wait_log("generation 1 serves with");
    // The next request on the old connection is answered, with close.
    assert_eq!(client.get("/"), hello(true));
    assert!(client.closed());
    let mut fresh = Http::connect(server.port(), &server);
    assert_eq!(fresh.get("/"), hello(false));
    server.wait_log("generation 0 drained");
}

#[test]
fn on_shutdown_hooks_run_once_per_host_when_it_drains() {
    let mut server = Server::start(
        &test_script("shutdown_hooks.lua"),
        &["--hosts", "1", "--grace", "5"],
    );
    let count = |server: &Server, text: &str| server.log().matches(text).count();
    server.wait_log("serving ");
    server.signal(libc::SIGHUP);
    server.wait_log("generation 1 serves with");
    // The old host's hooks: one yields, one fails (logged), one is added
    // while draining and runs at once.
    server.wait_log("late hook ran");
    assert_eq!(count(&server, "hook one ran"), 1);
    assert!(server.log().contains("hook one slept"));
    assert!(server.log().contains("hook two fails"));
    // The new host serves; at SIGTERM it runs its own hooks.
    let mut client = server.client();
    client.send("still here\n");
    assert_eq!(client.line(), "still here");
    // (Open, it would hold the host until --grace: hooks leave reads alone.)
    drop(client);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "{status}\n{}", server.log());
    assert_eq!(count(&server, "hook one ran"), 2, "{}", server.log());
    assert_eq!(count(&server, "late hook ran"), 2, "{}", server.log());
}
