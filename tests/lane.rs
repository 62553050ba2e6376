//! The blocking-task lane through `tests/scripts/lane_ops.lua`: blocking
//! work never holds up other connections, a full queue makes callers wait
//! (not fail, not grow memory), `--lane-timeout-ms` bounds that wait, and
//! the other lane calls (`lunet.fs.*`, `lunet.resolve`) work.
//!
//! No test asserts a duration: "before" and "after" are read from the order
//! in which answers arrive.

mod common;

use common::{Client, Server, TempDir};
use std::io::ErrorKind;

fn lane_server(args: &[&str]) -> Server {
    Server::start(&common::test_script("lane_ops.lua"), args)
}

/// Sends `command` and returns its one-line answer.
fn ask(client: &mut Client, command: &str) -> String {
    client.send(format!("{command}\n"));
    client.line()
}

/// True when the server has sent nothing on `client` yet (a non-blocking
/// peek at the socket).
fn nothing_arrived(client: &mut Client) -> bool {
    if !client.reader().buffer().is_empty() {
        return false;
    }
    let stream = client.stream();
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let result = stream.peek(&mut byte);
    stream.set_nonblocking(false).unwrap();
    matches!(result, Err(ref e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn ping_is_answered_while_a_lane_task_sleeps() {
    // One worker and one host: the slow session and the ping share the VM
    // and the only thread that runs Lua, so only the lane can keep them
    // apart.
    let server = lane_server(&["--workers", "1", "--hosts", "1", "--lane-threads", "1"]);
    let mut slow = server.client();
    assert_eq!(ask(&mut slow, "started_sleep 2000"), "started");

    let mut fast = server.client();
    assert_eq!(ask(&mut fast, "ping"), "pong");
    assert!(
        nothing_arrived(&mut slow),
        "the 2 s lane task answered before the ping did"
    );
    assert_eq!(slow.line(), "slept true nil");
    // The host serves both connections afterwards.
    assert_eq!(ask(&mut fast, "ping"), "pong");
    assert_eq!(ask(&mut slow, "ping"), "pong");
}

#[test]
fn full_lane_queue_makes_callers_wait_not_fail() {
    let server = lane_server(&["--lane-threads", "1", "--lane-queue", "2"]);
    let mut clients: Vec<Client> = (0..20).map(|_| server.client()).collect();
    for client in &mut clients {
        client.send("sleep 50\n");
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let answer = client.line();
        assert_eq!(answer, "true nil", "caller #{n}");
    }
    assert!(
        !server.log().contains("ERROR"),
        "errors in the log:\n{}",
        server.log()
    );
}

/// Opens `count` connections that each ask for a 1 ms lane sleep through a
/// one-thread lane with a 2-slot queue (so nearly all of them wait for a
/// slot), reads every answer, and returns the largest RSS seen meanwhile.
fn burst(server: &Server, count: usize) -> u64 {
    let mut clients: Vec<Client> = Vec::with_capacity(count);
    let mut peak = server.rss_kib();
    for n in 0..count {
        let mut client = server.client();
        client.send("sleep 1\n");
        clients.push(client);
        if n % 100 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    for (n, client) in clients.iter_mut().enumerate() {
        if n % 100 == 0 {
            peak = peak.max(server.rss_kib());
        }
        assert_eq!(client.line(), "true nil", "caller #{n}");
    }
    peak.max(server.rss_kib())
}

#[test]
fn waiting_lane_callers_keep_memory_bounded() {
    const CALLERS: usize = 2_000;
    let server = lane_server(&["--lane-threads", "1", "--lane-queue", "2"]);
    // Warm up: hosts, coroutine pools and allocator arenas reach their
    // working size.
    burst(&server, 200);
    let before = server.rss_kib();
    let first_peak = burst(&server, CALLERS);
    let after_first = server.rss_kib();
    let second_peak = burst(&server, CALLERS);
    let after_second = server.rss_kib();
    eprintln!(
        "RSS KiB: before {before}, first burst peak {first_peak} -> {after_first}, \
         second burst peak {second_peak} -> {after_second}"
    );
    // Generous: 32 KiB per waiting caller (connection, session and parked
    // task) would still pass; an unbounded queue or copies per retry would
    // not stay under it for long.
    let limit = 32 * CALLERS as u64;
    assert!(
        first_peak.saturating_sub(before) <= limit,
        "first burst grew RSS by {} KiB (limit {limit})",
        first_peak - before
    );
    // A second identical burst reuses what the first one left: no growth
    // proportional to the callers.
    assert!(
        second_peak <= first_peak + 16 * 1024,
        "second burst peaked at {second_peak} KiB, first at {first_peak} KiB"
    );
    assert!(
        after_second <= after_first + 16 * 1024,
        "RSS after the second burst {after_second} KiB, after the first {after_first} KiB"
    );
}

#[test]
fn lane_timeout_bounds_the_wait_for_a_slot() {
    let server = lane_server(&[
        "--lane-threads",
        "1",
        "--lane-queue",
        "1",
        "--lane-timeout-ms",
        "200",
    ]);
    let mut probe = server.client();
    assert_eq!(ask(&mut probe, "timeout_probe 3000"), "nil timeout");
    // The lane is still busy; the server is not.
    let mut other = server.client();
    assert_eq!(ask(&mut other, "ping"), "pong");
    assert_eq!(ask(&mut probe, "ping"), "pong");
}

#[test]
fn lane_slot_reaches_another_host_after_a_timed_out_waiter() {
    // The probe's own lane call times out while it waits for a slot; its
    // host stays registered as a waiter. A caller in another host that
    // starts waiting afterwards must still get the slot once one frees: its
    // timeout (1.5 s) is longer than what remains of the first lane sleep,
    // and a queued task has no timeout.
    let server = lane_server(&[
        "--hosts",
        "2",
        "--lane-threads",
        "1",
        "--lane-queue",
        "1",
        "--lane-timeout-ms",
        "1500",
    ]);
    server.wait_log("serving "); // both hosts have joined the listener
    let mut probe = server.client(); // first host (both idle: the first wins)
    probe.send("timeout_probe 2500\n");
    let mut other = server.client(); // the other host: least loaded
    assert_eq!(ask(&mut other, "ping"), "pong");
    assert_eq!(probe.line(), "nil timeout");
    // The first fork's lane sleep still runs and the second one holds the
    // queue slot, so this call waits for a slot.
    let answer = ask(&mut other, "sleep 1");
    assert_eq!(
        answer, "true nil",
        "a caller of another host timed out although a slot had freed"
    );
}

#[test]
fn fs_write_then_read_round_trips_bytes() {
    let dir = TempDir::new("fs");
    let server = lane_server(&[]);
    let mut client = server.client();
    let path = dir.file("all-bytes.bin");
    assert_eq!(
        ask(&mut client, &format!("fs_roundtrip {path}")),
        "same 16384"
    );
    // What the server wrote is on disk as it was written.
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 16384);
    assert!(on_disk.chunks(256).all(|c| c.iter().copied().eq(0..=255u8)));

    let text = dir.file("text.txt");
    assert_eq!(
        ask(&mut client, &format!("fs_write {text} hello")),
        "true nil"
    );
    assert_eq!(ask(&mut client, &format!("fs_read {text}")), "data hello");
}

#[test]
fn fs_read_of_a_missing_file_is_nil_and_error() {
    let dir = TempDir::new("fs-missing");
    let server = lane_server(&[]);
    let mut client = server.client();
    let missing = dir.file("no-such-file");
    let answer = ask(&mut client, &format!("fs_read {missing}"));
    assert!(answer.starts_with("nil "), "got {answer:?}");
    assert!(
        answer.contains("no-such-file") && answer.to_lowercase().contains("no such file"),
        "the error names the path and the cause: {answer:?}"
    );
    let answer = ask(
        &mut client,
        &format!("fs_write {}/no-dir/x data", dir.0.display()),
    );
    assert!(answer.starts_with("nil "), "got {answer:?}");
    assert_eq!(ask(&mut client, "ping"), "pong");
}

#[test]
fn resolve_localhost_includes_loopback() {
    let server = lane_server(&[]);
    let mut client = server.client();
    let answer = ask(&mut client, "resolve localhost");
    let ips = answer
        .strip_prefix("ips ")
        .unwrap_or_else(|| panic!("expected ips, got {answer:?}"));
    assert!(
        ips.split(',').any(|ip| ip == "127.0.0.1"),
        "127.0.0.1 not among {ips:?}"
    );
}

#[test]
fn resolve_of_an_invalid_name_is_nil_and_error() {
    let server = lane_server(&[]);
    let mut client = server.client();
    // ".invalid" is reserved (RFC 2606) and never resolves; the empty label
    // makes the name malformed as well, so no resolver configuration can
    // answer it.
    let answer = ask(&mut client, "resolve no..such.host.invalid");
    assert!(answer.starts_with("nil "), "got {answer:?}");
    assert!(
        answer.len() > "nil ".len() + 3,
        "an error message: {answer:?}"
    );
    assert_eq!(ask(&mut client, "ping"), "pong");
}

#[test]
fn lane_calls_finish_after_the_callers_connection_closed() {
    // A caller that goes away while its task runs must not take the host
    // down when the result comes back.
    let server = lane_server(&["--lane-threads", "1"]);
    {
        let mut gone = server.client();
        assert_eq!(ask(&mut gone, "started_sleep 200"), "started");
    }
    let mut client = server.client();
    // Queued behind the abandoned task on the only lane thread: answered
    // after it finished and its result was delivered.
    assert_eq!(ask(&mut client, "sleep 1"), "true nil");
    assert_eq!(ask(&mut client, "ping"), "pong");
    assert!(
        !server.log().contains("panicked"),
        "a panic in the log:\n{}",
        server.log()
    );
}
