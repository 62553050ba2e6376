//! Start and stop: SIGTERM/SIGINT stop accepting, let sessions in flight
//! finish within `--grace`, and exit 0.

mod common;

use common::{test_script, try_connect, Server, DEADLINE};
use std::io::ErrorKind;
use std::thread;
use std::time::{Duration, Instant};

fn lifecycle(args: &[&str]) -> Server {
    Server::start(&test_script("lifecycle.lua"), args)
}

/// Connects until the listener refuses, while the server is still running.
/// Panics if connections are still accepted when the server exits or the
/// deadline passes.
fn wait_until_refused(server: &mut Server) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match try_connect(server.port()) {
            // A SYN that meets the listener while it closes is answered
            // with a reset instead of a refusal: the listener is gone either way.
            Err(e)
                if e.kind() == ErrorKind::ConnectionRefused
                    || e.kind() == ErrorKind::ConnectionReset =>
            {
                if let Some(status) = server.exited() {
                    server.fail(&format!(
                        "connections were refused only because the server had exited ({status}) \
                         while a session was still in flight"
                    ));
                }
                return;
            }
            Err(e) => server.fail(&format!("connect after SIGTERM: {e}")),
            // Accepted before the listener closed, or never closed: retry.
            Ok(stream) => drop(stream),
        }
        if Instant::now() >= deadline {
            server.fail("new connections were still accepted long after SIGTERM");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_lets_the_session_in_flight_finish() {
    let mut server = lifecycle(&[]);
    let mut client = server.client();
    client.send("work 1500\n");
    assert_eq!(client.line(), "started");

    server.signal(libc::SIGTERM);
    wait_until_refused(&mut server);

    assert_eq!(client.line(), "done");
    client.end();
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}\n{}", server.log());
}

#[test]
fn sigint_stops_an_idle_server_with_status_0() {
    let mut server = lifecycle(&[]);
    let mut client = server.client();
    client.send("work 0\n");
    assert_eq!(client.line(), "started");
    assert_eq!(client.line(), "done");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}\n{}", server.log());
}

#[test]
fn sigterm_with_an_idle_connection_open_exits() {
    // A connection whose handler waits for a line that never comes must not
    // keep the server alive past the grace period.
    let mut server = lifecycle(&["--grace", "1"]);
    let mut client = server.client();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}\n{}", server.log());
    client.end();
}

#[test]
fn grace_period_ends_sessions_that_do_not_finish() {
    let mut server = lifecycle(&["--grace", "1"]);
    let mut client = server.client();
    client.send("work 600000\n");
    assert_eq!(client.line(), "started");
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}\n{}", server.log());
    // The stuck session never answered "done".
    client.end();
}

#[test]
fn connections_posted_to_a_retired_host_are_counted_down() {
    // The only host exits while the reactor hands it new connections:
    // those still queued in its mailbox are dropped with it, and must leave
    // the count of live connections, or shutdown would wait out the whole
    // grace period for connections that no longer exist.
    let mut server = Server::start(
        &test_script("retire.lua"),
        &["--hosts", "1", "--grace", "30"],
    );
    let mut retiring = server.client();
    retiring.send("retire\n");
    assert_eq!(retiring.line(), "retiring");
    let mut queued: Vec<_> = (0..20).map(|_| server.client()).collect();
    for client in &mut queued {
        client.send("hello\n");
    }
    // The host has exited once its own connection ends. Connections it
    // took before are closed by its exit, those queued in its mailbox by
    // being dropped, and those the reactor could no longer hand to it wait
    // in the backlog until the listener closes.
    retiring.end();
    server.signal(libc::SIGTERM);
    for client in &mut queued {
        let _ = client.end();
    }
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}\n{}", server.log());
    let log = server.log();
    assert!(
        log.contains("all connections closed") && !log.contains("grace period over"),
        "the connection count did not return to zero:\n{log}"
    );
}
