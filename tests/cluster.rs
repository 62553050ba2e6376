//! The cluster (docs/cluster.md): one `nats-server` (Debian's, with `-js`
//! and a temporary store) and lunet nodes on loopback. Each node serves
//! `tests/scripts/cluster_node.lua`, whose listener takes one command per
//! line (`calls wb 10000`, `register x`, ...) and answers `ok ...` or
//! `err ...`; the names are held by `cluster_worker.lua` services, which
//! hold the `cluster` capability only.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{closed_port, run_to_exit, test_script, try_connect, Server, TempDir, DEADLINE};

/// A `nats-server` on a free loopback port, killed when dropped.
struct Nats {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    config: Option<String>,
    jetstream: bool,
}

impl Nats {
    fn start() -> Nats {
        Nats::start_with(None)
    }

    /// With `config` as the server's configuration file's text.
    fn start_with(config: Option<&str>) -> Nats {
        Nats::start_as(config, true)
    }

    /// With JetStream (`-js`) or without.
    fn start_as(config: Option<&str>, jetstream: bool) -> Nats {
        let mut nats = Nats {
            child: None,
            port: 0,
            dir: TempDir::new("nats"),
            config: config.map(str::to_string),
            jetstream,
        };
        for _ in 0..5 {
            nats.port = closed_port();
            if nats.launch() {
                return nats;
            }
        }
        panic!("nats-server did not start on a free port within {DEADLINE:?} (5 tries)");
    }

    /// Starts the server on `self.port`; whether it accepts connections.
    fn launch(&mut self) -> bool {
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.jetstream {
            command.args(["-js", "-sd", &self.dir.file("store")]);
        }
        if let Some(config) = &self.config {
            let path = self.dir.file("nats.conf");
            std::fs::write(&path, config).expect("write nats.conf");
            command.args(["-c", &path]);
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start nats-server: {e}; apt-get install nats-server")
        });
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if let Ok(stream) = try_connect(self.port) {
                let mut info = String::new();
                stream
                    .set_read_timeout(Some(DEADLINE))
                    .expect("set_read_timeout");
                if BufReader::new(stream).read_line(&mut info).is_ok() && info.starts_with("INFO ")
                {
                    self.child = Some(child);
                    return true;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + DEADLINE;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start again on port {}",
                self.port
            );
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A node: `lunet serve cluster_node.lua` joined to `nats` as `name`,
/// its runtimes' modules in `tests/modules`.
fn node(nats_url: &str, name: &str) -> Server {
    node_with(nats_url, name, &[])
}

/// [`node`] with more flags.
fn node_with(nats_url: &str, name: &str, more: &[&str]) -> Server {
    let modules = format!("{}/tests/modules", env!("CARGO_MANIFEST_DIR"));
    let node_arg = format!("node={name}");
    let mut args = vec![
        node_arg.as_str(),
        "--hosts",
        "1",
        "--cluster",
        nats_url,
        "--node",
        name,
        "--modules",
        &modules,
    ];
    args.extend_from_slice(more);
    Server::start(&test_script("cluster_node.lua"), &args)
}

/// Sends one command and returns the answer line.
fn ask(server: &Server, command: &str) -> String {
    let mut client = server.client();
    client.send(format!("{command}\n"));
    client.line()
}

/// The longest a command of many calls may take (a debug build on a
/// shared machine).
const LONG: Duration = Duration::from_secs(120);

/// Like [`ask`], for a command that runs many calls.
fn ask_long(server: &Server, command: &str) -> String {
    let stream = try_connect(server.port()).expect("connect to the node");
    stream
        .set_read_timeout(Some(LONG))
        .expect("set_read_timeout");
    (&stream)
        .write_all(format!("{command}\n").as_bytes())
        .expect("send the command");
    let mut answer = String::new();
    if let Err(e) = BufReader::new(&stream).read_line(&mut answer) {
        server.fail(&format!("{command:?}: no answer within {LONG:?}: {e}"));
    }
    answer.trim_end().to_string()
}

#[track_caller]
fn expect(server: &Server, command: &str, answer: &str) {
    let got = ask(server, command);
    if got != answer {
        server.fail(&format!(
            "{command:?} answered {got:?}, expected {answer:?}"
        ));
    }
}

#[track_caller]
fn expect_error(server: &Server, command: &str, part: &str) -> String {
    let got = ask(server, command);
    if !(got.starts_with("err ") && got.contains(part)) {
        server.fail(&format!(
            "{command:?} answered {got:?}, expected an error with {part:?}"
        ));
    }
    got
}

/// Asks `command` until it answers `answer` (the cluster converges:
/// heartbeats every 500 ms), bounded by the deadline.
#[track_caller]
fn until(server: &Server, command: &str, answer: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = ask(server, command);
        if got == answer {
            return;
        }
        if Instant::now() > deadline {
            server.fail(&format!(
                "{command:?} still answers {got:?} after {DEADLINE:?}, expected {answer:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Three nodes a, b, c, each with a worker named w + its name, that see
/// each other.
fn three_nodes(nats: &Nats) -> Vec<Server> {
    let url = nats.url();
    let nodes: Vec<Server> = ["a", "b", "c"].iter().map(|n| node(&url, n)).collect();
    for (server, name) in nodes.iter().zip(["a", "b", "c"]) {
        expect(server, &format!("spawn w{name}"), "ok spawned");
    }
    for server in &nodes {
        until(server, "nodes", "ok a,b,c");
    }
    nodes
}

#[test]
fn calls_and_sends_cross_nodes_in_order() {
    let nats = Nats::start();
    let nodes = three_nodes(&nats);
    // Every node calls each of the two others 10,000 times, each pair at
    // once on its own connection: every answer is checked, in order.
    thread::scope(|scope| {
        for (server, from) in nodes.iter().zip(["a", "b", "c"]) {
            for to in ["a", "b", "c"].into_iter().filter(|to| *to != from) {
                scope.spawn(move || {
                    for (command, answer) in [
                        (format!("calls w{to} 10000"), "ok called 10000"),
                        (format!("sends w{to} 2000"), "ok seen 2000"),
                    ] {
                        let got = ask_long(server, &command);
                        if got != answer {
                            server.fail(&format!("{command:?} answered {got:?}"));
                        }
                    }
                });
            }
        }
    });
    // Values travel both ways with the message codec, remote references
    // among them: a calls b's worker with a reference to c's, which b's
    // worker calls.
    expect(&nodes[0], "call wb echo 1 two", "ok 1 two");
    expect(&nodes[0], "relay wb wc", "ok lunet.remote(wc@c) c");
    expect(&nodes[0], "call wc where", "ok c");
    expect(&nodes[2], "query wa", "ok wa@a");
}

#[test]
fn names_are_unique_across_nodes_and_unknown_names_fail_at_once() {
    let nats = Nats::start();
    let url = nats.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    expect(&a, "spawn wa", "ok spawned");
    expect_error(&b, "register wa", "'wa' is taken (by node 'a')");
    expect_error(&a, "register wa", "'wa' is taken (by :");
    expect_error(&b, "register bad.name", "is not a name");
    expect(&b, "query nobody", "ok nil");
    // The holder exits: the first call finds it gone and frees the name,
    // the next one gets "no responders" from NATS at once.
    expect(&b, "keep wa", "ok kept");
    expect(&b, "call_kept wa quit", "ok quitting");
    let gone = ask(&b, "call_kept wa echo 1");
    if !gone.starts_with("err ") {
        b.fail(&format!("a call to an exited holder answered {gone:?}"));
    }
    expect_error(
        &b,
        "call_kept wa echo 1",
        "no responders: no node serves 'wa'",
    );
    // Freed: another node may take it.
    expect(&b, "register wa", "ok registered");
    expect(&a, "query wa", "ok wa@b");
    // A remote error comes back as the caller's error.
    expect(&a, "spawn wa2", "ok spawned");
    expect_error(&b, "call wa2 fail", "boom from wa2");
}

/// Asks `command` until `holds` says yes of the answer, bounded by the
/// deadline.
#[track_caller]
fn until_answer(server: &Server, command: &str, holds: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = ask(server, command);
        if holds(&got) {
            return got;
        }
        if Instant::now() > deadline {
            server.fail(&format!(
                "{command:?} still answers {got:?} after {DEADLINE:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_killed_mid_call_fails_its_callers_and_is_reported_down() {
    let nats = Nats::start();
    let mut nodes = three_nodes(&nats);
    let c = nodes.pop().expect("three nodes");
    let (a, b) = (&nodes[0], &nodes[1]);
    thread::scope(|scope| {
        let pending = scope.spawn(|| ask_long(a, "call wc sleep 60000"));
        c.wait_log("wc sleeps");
        c.signal(libc::SIGKILL);
        let answer = pending.join().expect("the caller's thread");
        if !(answer.starts_with("err ") && answer.contains("node 'c' is down")) {
            a.fail(&format!(
                "the call pending on the killed node answered {answer:?}"
            ));
        }
    });
    until_answer(a, "events", |events| events.contains("down c"));
    until(b, "nodes", "ok a,b");
    // Its names are gone with it: calls to them fail at once.
    expect(b, "query wc", "ok nil");
    expect(a, "call wb echo still", "ok still");
}

#[test]
fn a_draining_node_leaves_at_once_and_a_namesake_may_join_meanwhile() {
    let nats = Nats::start();
    let url = nats.url();
    // Its grace outlasts the test: whatever follows happens while it drains.
    let mut old = node_with(&url, "a", &["--grace", "120"]);
    let b = node(&url, "b");
    expect(&old, "spawn wa", "ok spawned");
    until(&b, "nodes", "ok a,b");
    expect(&b, "call wa echo before", "ok before");
    old.signal(libc::SIGTERM);
    old.wait_log("leaves the cluster");
    // Its connection to NATS stays up (no heartbeat bound runs out): only
    // its goodbye makes b report it down and forget its name.
    until_answer(&b, "events", |events| events.contains("down a"));
    until(&b, "nodes", "ok b");
    expect(&b, "query wa", "ok nil");
    expect_error(&b, "call wa echo gone", "no node serves 'wa'");
    // A node of the same name joins and takes the name while the old one
    // is still draining.
    let new = node(&url, "a");
    expect(&new, "spawn wa", "ok spawned");
    if let Some(status) = old.exited() {
        old.fail(&format!(
            "the draining node exited ({status}) before its namesake joined"
        ));
    }
    until(&b, "nodes", "ok a,b");
    until(&b, "query wa", "ok wa@a");
    expect(&b, "call wa echo after", "ok after");
    until_answer(&b, "events", |events| events.ends_with("down a;up a"));
}

/// A NATS client that claims the name `name` for node `node` (it answers
/// probes) but answers no call and sends no heartbeat: a node that died
/// before anyone heard from it.
fn silent_holder(nats: &Nats, name: &str, node: &str) -> std::net::TcpStream {
    let stream = try_connect(nats.port).expect("connect to nats-server");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set_read_timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("INFO");
    (&stream)
        .write_all(
            format!("CONNECT {{\"verbose\":false}}\r\nSUB lunet.n.{name}.* 1\r\nPING\r\n")
                .as_bytes(),
        )
        .expect("SUB");
    let mut writer = stream.try_clone().expect("clone");
    let node = node.to_string();
    thread::spawn(move || {
        // Answers each probe "n" + node; PONG and the rest are skipped.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            line.clear();
            if fields.first().map(String::as_str) == Some("MSG") && fields.len() == 5 {
                let _ = reader.read_line(&mut line);
                line.clear();
                if !fields[1].ends_with(".q") {
                    continue; // a call: never answered
                }
                let answer = format!("n{node}");
                let _ = writer.write_all(
                    format!("PUB {} {}\r\n{answer}\r\n", fields[3], answer.len()).as_bytes(),
                );
            }
        }
    });
    stream
}

#[test]
fn a_call_to_a_node_never_heard_from_fails_within_the_bound() {
    let nats = Nats::start();
    let a = node(&nats.url(), "a");
    let _holder = silent_holder(&nats, "ghost", "phantom");
    expect(&a, "query ghost", "ok ghost@phantom");
    // Its call gets no answer and no heartbeat of node 'phantom' ever
    // comes: it fails as a call to a dead node does.
    let answer = ask_long(&a, "call ghost echo 1");
    assert!(
        answer.starts_with("err ") && answer.contains("node 'phantom' is down (never heard from"),
        "{answer}"
    );
}

#[test]
fn nodes_reconnect_after_nats_restarts_and_fail_fast_meanwhile() {
    let mut nats = Nats::start();
    let url = nats.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    expect(&b, "spawn wb", "ok spawned");
    expect(&a, "keep wb", "ok kept");
    expect(&a, "call_kept wb echo before", "ok before");
    nats.stop();
    // Down: a call fails with an error that says why, it does not wait.
    let down = until_answer(&a, "call_kept wb echo during", |got| {
        got.contains("the cluster is unreachable")
    });
    assert!(down.starts_with("err "), "{down}");
    expect_error(&a, "query wb", "the cluster is unreachable");
    nats.restart();
    until(&a, "call_kept wb echo after", "ok after");
    expect(&a, "calls wb 100", "ok called 100");
    expect(&b, "query wb", "ok wb@b");
}

#[test]
fn groups_span_nodes_call_picks_one_member_and_send_reaches_all() {
    let nats = Nats::start();
    let url = nats.url();
    let nodes: Vec<Server> = ["a", "b", "c"].iter().map(|n| node(&url, n)).collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    expect(a, "spawn wa pool", "ok spawned");
    expect(b, "spawn wb pool", "ok spawned");
    // Each node that has a member takes calls: NATS's queue group picks.
    let spread = until_answer(c, "gcall pool 200", |got| {
        got.contains("a=") && got.contains("b=")
    });
    let total: u32 = spread
        .trim_start_matches("ok ")
        .split(',')
        .filter_map(|part| part.split_once('=')?.1.parse::<u32>().ok())
        .sum();
    assert_eq!(total, 200, "{spread}");
    // A send reaches every member, on every node.
    expect(c, "gsend pool hello", "ok true");
    until(c, "call wa has hello", "ok true");
    until(c, "call wb has hello", "ok true");
    // A group no node serves: no responders, at once.
    expect_error(
        c,
        "gcall nobody 1",
        "no responders: no node serves group 'nobody'",
    );
    expect_error(c, "gcall bad..name 1", "cannot be a group of the cluster");
}

#[test]
fn subs_run_in_runtimes_of_other_nodes_and_continuations_travel() {
    let nats = Nats::start();
    let url = nats.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    let c = node(&url, "c");
    expect(&b, "runtime cps-b", "ok runtime");
    expect(&c, "runtime cps-c", "ok runtime");
    // a asks b's runtime, which answers with the continuation; a sends it
    // to c's runtime, where it runs.
    expect(&a, "cps cps-b cps-c", "ok 42 a");
}

/// `lunet modules push DIR --cluster URL`: its status and output.
fn push_modules(dir: &str, url: &str) -> (bool, String) {
    let output = Command::new(common::binary())
        .args(["modules", "push", dir, "--cluster", url])
        .stdin(Stdio::null())
        .output()
        .expect("run lunet modules push");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn pushed_modules_are_fetched_by_nodes_that_lack_them() {
    let nats = Nats::start();
    let url = nats.url();
    let pushed = format!("{}/tests/cluster_modules", env!("CARGO_MANIFEST_DIR"));
    let (ok, output) = push_modules(&pushed, &url);
    assert!(ok, "{output}");
    assert!(output.contains("pushed c.greet 3.1"), "{output}");
    assert!(output.contains("pushed c.polite 1.0"), "{output}");
    // Node a has tests/modules on its path, not c/*.lua: it fetches them,
    // the dependency too.
    let a = node(&url, "a");
    expect(&a, "fetched c.polite hello bob", "ok well, hello bob");
    expect(&a, "fetched c.greet hello ann", "ok hello ann");
    a.wait_log("fetched module c.greet 3.1");
    expect_error(
        &a,
        "fetched c.nowhere hello x",
        "it was not pushed to the cluster",
    );
    // A module the node has on disk is not asked for.
    expect(&a, "fetched t.cps result x", "ok nil");
}

#[test]
fn pushing_needs_jetstream_and_module_files() {
    let nats = Nats::start_as(None, false);
    let pushed = format!("{}/tests/cluster_modules", env!("CARGO_MANIFEST_DIR"));
    let (ok, output) = push_modules(&pushed, &nats.url());
    assert!(!ok, "{output}");
    assert!(output.contains("JetStream is not enabled"), "{output}");
    let empty = TempDir::new("no-modules");
    let (ok, output) = push_modules(&empty.file(""), &nats.url());
    assert!(!ok, "{output}");
    assert!(output.contains("no module file"), "{output}");
    // A file that is no module is named, before anything is pushed.
    let (ok, output) = push_modules(
        &format!("{}/tests/modules", env!("CARGO_MANIFEST_DIR")),
        &nats.url(),
    );
    assert!(!ok, "{output}");
    assert!(
        output.contains("t/misnamed.lua: its lunet.module{} declares name = 't.other'"),
        "{output}"
    );
}

#[test]
fn two_nodes_registering_the_same_names_at_once_get_each_name_once() {
    let nats = Nats::start();
    let url = nats.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    let names = 30;
    let (won_a, won_b) = thread::scope(|scope| {
        let on_a = scope.spawn(|| ask_long(&a, &format!("race r {names}")));
        let on_b = scope.spawn(|| ask_long(&b, &format!("race r {names}")));
        (on_a.join().expect("a"), on_b.join().expect("b"))
    });
    let numbers = |answer: &str| -> Vec<u32> {
        answer
            .trim_start_matches("ok ")
            .split(',')
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    let (mut got, from_b) = (numbers(&won_a), numbers(&won_b));
    got.extend(&from_b);
    got.sort_unstable();
    // Every name has exactly one holder.
    assert_eq!(
        got,
        (1..=names).collect::<Vec<u32>>(),
        "a: {won_a}; b: {won_b}"
    );
    for n in [1, names / 2, names] {
        let holder = if numbers(&won_a).contains(&n) {
            "a"
        } else {
            "b"
        };
        expect(&a, &format!("query r{n}"), &format!("ok r{n}@{holder}"));
    }
}

#[test]
fn a_node_name_is_taken_once_and_bad_flags_are_refused() {
    let nats = Nats::start();
    let url = nats.url();
    let _a = node(&url, "a");
    let script = test_script("cluster_node.lua");
    let (status, log) = run_to_exit(
        &script,
        &["listen=127.0.0.1:0", "--cluster", &url, "--node", "a"],
    );
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("node name 'a' is taken by a live node"),
        "{log}"
    );

    let (status, log) = run_to_exit(
        &script,
        &["listen=127.0.0.1:0", "--cluster", &url, "--node", "a.b"],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("--node: 'a.b'"), "{log}");

    let (status, log) = run_to_exit(
        &script,
        &["listen=127.0.0.1:0", "--cluster", "http://x", "--node", "z"],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("expected nats://HOST:PORT"), "{log}");

    let closed = format!("nats://127.0.0.1:{}", closed_port());
    let (status, log) = run_to_exit(
        &script,
        &["listen=127.0.0.1:0", "--cluster", &closed, "--node", "z"],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot join the cluster"), "{log}");
}

#[test]
fn a_server_that_is_not_nats_is_refused_with_a_clear_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = thread::spawn(move || {
        // Garbage instead of INFO, to every connection until the test ends.
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let _ = stream.write_all(b"HELLO \x00\xff garbage\r\n");
            thread::sleep(Duration::from_millis(200));
        }
    });
    let (status, log) = run_to_exit(
        &test_script("cluster_node.lua"),
        &[
            "listen=127.0.0.1:0",
            "--cluster",
            &format!("nats://127.0.0.1:{port}"),
            "--node",
            "z",
        ],
    );
    fake.join().unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("the server is not NATS"), "{log}");
}

#[test]
fn a_message_over_max_payload_is_refused_to_its_caller() {
    let nats = Nats::start_with(Some("max_payload: 4096\n"));
    let url = nats.url();
    let a = node(&url, "a");
    let b = node(&url, "b");
    expect(&b, "spawn wb", "ok spawned");
    expect(&a, "big wb 1000", "ok 1000");
    expect_error(&a, "big wb 5000", "over the server's max_payload (4096)");
    // The node goes on.
    expect(&a, "call wb echo after", "ok after");
}

#[test]
fn a_sandbox_without_the_capability_is_refused() {
    let nats = Nats::start();
    let a = node(&nats.url(), "a");
    expect_error(&a, "sandboxed", "not permitted: spawned without cluster");
}

#[test]
fn without_cluster_the_calls_say_so() {
    let (status, log) = run_to_exit(&test_script("cluster_node.lua"), &["listen=127.0.0.1:0"]);
    assert!(!status.success(), "{log}");
    assert!(log.contains("this process is not in a cluster"), "{log}");
}

#[test]
fn each_process_of_a_server_is_a_node_of_its_own() {
    // `--processes 2 --node p`: processes 0 and 1 join as p-0 and p-1
    // (one name for both would refuse the second process).
    let nats = Nats::start();
    let modules = format!("{}/tests/modules", env!("CARGO_MANIFEST_DIR"));
    let server = Server::start(
        &test_script("cluster_node.lua"),
        &[
            "node=p",
            "--processes",
            "2",
            "--hosts",
            "1",
            "--cluster",
            &nats.url(),
            "--node",
            "p",
            "--modules",
            &modules,
        ],
    );
    until(&server, "nodes", "ok p-0,p-1");
}
