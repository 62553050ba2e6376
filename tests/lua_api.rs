//! The `lunet` Lua API, one call at a time, through
//! `tests/scripts/api.lua` (the first line names the command) and
//! `tests/scripts/proxy.lua`.

mod common;

use common::{closed_port, test_script, Client, End, Server};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;

fn api() -> Server {
    Server::start(&test_script("api.lua"), &["greeting=hi"])
}

/// A connection to the api script that has sent `command`.
fn command(server: &Server, command: &str) -> Client {
    let mut client = server.client();
    client.send(format!("{command}\n"));
    client
}

#[test]
fn readn_returns_exactly_n_bytes() {
    let server = api();
    let mut client = command(&server, "readn");
    client.send("abcdefgh\n");
    assert_eq!(client.line(), "[abcde][fgh]");
}

#[test]
fn readn_returns_partial_data_on_close() {
    let server = api();
    let mut client = command(&server, "readn_partial");
    client.send("abc");
    client.shutdown_write();
    assert_eq!(client.line(), "nil closed abc");
}

#[test]
fn readn_returns_partial_data_on_timeout() {
    let server = api();
    let mut client = command(&server, "readn_timeout");
    client.send("abc");
    assert_eq!(client.line(), "nil timeout abc");
}

#[test]
fn readuntil_consumes_the_delimiter() {
    let server = api();
    let mut client = command(&server, "readuntil");
    client.send("first part--END--rest\n");
    assert_eq!(client.line(), "[first part][rest]");
}

#[test]
fn readuntil_delimiter_split_across_segments() {
    let server = api();
    let mut client = command(&server, "readuntil");
    for part in ["before--E", "N", "D-", "-after\n"] {
        client.send(part);
        thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(client.line(), "[before][after]");
}

#[test]
fn readuntil_returns_partial_data_on_close() {
    let server = api();
    let mut client = command(&server, "readuntil_partial");
    client.send("no delimiter");
    client.shutdown_write();
    assert_eq!(client.line(), "nil closed no delimiter");
}

#[test]
fn readuntil_over_max_is_too_long() {
    let server = api();
    let mut client = command(&server, "readuntil_max");
    client.send("0123456789abcdefghij|");
    assert_eq!(client.line(), "nil too long");
}

#[test]
fn readsome_returns_what_is_there_up_to_max() {
    let server = api();
    let mut client = server.client();
    // Command and payload in one segment: all of it is buffered at once.
    client.send("readsome\nxyz");
    assert_eq!(client.line(), "[xy][z]");
}

#[test]
fn readsome_reports_closed() {
    let server = api();
    let mut client = command(&server, "readsome_closed");
    client.shutdown_write();
    assert_eq!(client.line(), "nil closed");
}

#[test]
fn readline_over_explicit_max_is_too_long() {
    let server = api();
    let mut client = command(&server, "readline_max");
    client.send("01234567890123456789\n");
    assert_eq!(client.line(), "nil too long");
}

#[test]
fn readline_does_not_return_an_unterminated_last_line() {
    let server = api();
    let mut client = command(&server, "readline_eof");
    client.send("no newline");
    client.shutdown_write();
    assert_eq!(client.line(), "nil closed");
}

#[test]
fn readline_strips_crlf() {
    let server = api();
    let mut client = server.client();
    client.send("crlf\r\nwith cr\r\n\r\nwithout cr\n");
    assert_eq!(client.line(), "[with cr][][without cr]");
}

#[test]
fn write_takes_strings_and_numbers() {
    let server = api();
    let mut client = command(&server, "write_values");
    assert_eq!(client.line(), "a12.5b");
    assert_eq!(client.line(), "true");
}

#[test]
fn write_larger_than_high_water_mark_arrives_whole() {
    let server = api();
    let mut client = command(&server, "write_big");
    let data = client.bytes(3 * 1024 * 1024 + 1);
    assert!(data[..data.len() - 1].iter().all(|b| *b == b'x'));
    assert_eq!(data.last(), Some(&b'\n'));
}

#[test]
fn peer_is_the_client_address() {
    let server = api();
    let mut client = command(&server, "peer");
    let local = client.stream().local_addr().unwrap();
    assert_eq!(client.line(), local.to_string());
}

#[test]
fn getenv_reads_key_value_arguments() {
    let server = api();
    let mut client = command(&server, "getenv");
    assert_eq!(client.line(), "hi fallback nil");
}

#[test]
fn close_ends_the_connection() {
    let server = api();
    let mut client = command(&server, "close");
    assert_eq!(client.line(), "bye");
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn read_timeout_reports_timeout() {
    let server = api();
    let mut client = command(&server, "timeout");
    // Send nothing: the 200 ms read timeout fires.
    assert_eq!(client.line(), "timeout");
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn read_before_timeout_succeeds() {
    let server = api();
    let mut client = server.client();
    client.send("timeout\nin time\n");
    assert_eq!(client.line(), "line in time");
}

#[test]
fn settimeout_zero_disables_the_timeout() {
    let server = api();
    let mut client = command(&server, "no_timeout");
    // Longer than the 200 ms that was set and then cleared.
    thread::sleep(std::time::Duration::from_millis(500));
    client.send("late\n");
    assert_eq!(client.line(), "late nil");
}

#[test]
fn sleep_wakes_sessions_in_deadline_order() {
    let server = api();
    let mut client = command(&server, "sleep_order");
    assert_eq!(client.line(), "10,20,30");
}

#[test]
fn timeout_runs_callbacks_in_deadline_order() {
    let server = api();
    let mut client = command(&server, "timeout_order");
    assert_eq!(client.line(), "10,20,30");
}

#[test]
fn fork_passes_arguments() {
    let server = api();
    let mut client = command(&server, "fork_args");
    assert_eq!(client.line(), "1,two,nil");
}

#[test]
fn forked_session_can_write_to_the_connection() {
    let server = api();
    let mut client = command(&server, "fork_write");
    assert_eq!(client.line(), "from fork");
    assert_eq!(client.line(), "from handler");
}

#[test]
fn now_is_monotonic_milliseconds() {
    let server = api();
    let mut client = command(&server, "now");
    // A number, and a 20 ms sleep moves it forward by at least ~20.
    assert_eq!(client.line(), "number true");
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let server = api();
    let mut client = command(&server, "connect");
    client.send(format!("127.0.0.1:{}\n", closed_port()));
    assert_eq!(client.line(), "false refused");
}

#[test]
fn connect_talks_to_an_upstream_server() {
    let server = api();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = upstream.local_addr().unwrap();
    let mut client = command(&server, "upstream");
    client.send(format!("{address}\n"));

    let (stream, _) = upstream.accept().unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello upstream\n");
    (&stream).write_all(b"hello lunet\n").unwrap();

    assert_eq!(client.line(), "hello lunet nil");
}

#[test]
fn closed_socket_reports_closed() {
    let server = api();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = command(&server, "use_after_close");
    client.send(format!("{}\n", upstream.local_addr().unwrap()));
    let _accepted = upstream.accept().unwrap();
    // close twice is harmless; write and read then return nil, "closed".
    assert_eq!(client.line(), "nil closed nil closed");
}

#[test]
fn proxy_through_a_second_listener_with_connect() {
    let server = Server::start_listeners(&test_script("proxy.lua"), &[], 2);
    // The log does not say which port is which: ask each.
    let mut fronts = Vec::new();
    let mut backends = Vec::new();
    for &port in server.ports() {
        let mut client = server.client_on(port);
        client.send("ping\n");
        match client.line().as_str() {
            "proxy:backend:ping" => fronts.push(port),
            "backend:ping" => backends.push(port),
            other => server.fail(&format!("port {port} answered {other:?}")),
        }
    }
    assert!(
        !fronts.is_empty(),
        "no proxy front among {:?}",
        server.ports()
    );
    assert!(
        !backends.is_empty(),
        "no backend among {:?}",
        server.ports()
    );

    // Many connections, so every host's front and backend take part.
    let front = fronts[0];
    let mut clients: Vec<Client> = (0..20).map(|_| server.client_on(front)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(format!("line {i}\nsecond {i}\n"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.line(), format!("proxy:backend:line {i}"));
        assert_eq!(client.line(), format!("proxy:backend:second {i}"));
    }
}

#[test]
fn coroutines_of_the_script_can_call_lunet() {
    let ran = common::run_script(
        &common::test_script("user_coroutines.lua"),
        &[],
        std::time::Duration::from_secs(20),
    );
    ran.expect("generator", "A,B");
    ran.expect("nested", "true,2,inner,true,42,done");
    ran.expect("wakeup", "true");
    ran.expect("wait", "true,woken");
    ran.expect("wrap_error", "false,boom");
    ran.expect("after_bare", "alive");
    ran.expect_log("yielded outside lunet's API");
}

#[test]
fn gc_finalizers_may_use_sockets_while_the_handler_allocates() {
    // A finalizer runs inside whatever allocation triggers the collector,
    // also one made by lunet's own Rust code while it handles a read: the
    // socket calls it makes must work there too.
    let server = api();
    let mut client = command(&server, "gc_churn");
    let lines = 20_000;
    let line = "x".repeat(1000);
    let mut payload = format!("{lines}\n");
    for _ in 0..lines {
        payload.push_str(&line);
        payload.push('\n');
    }
    let writer = {
        let stream = client.stream().try_clone().unwrap();
        thread::spawn(move || {
            let mut stream = stream;
            stream.write_all(payload.as_bytes())
        })
    };
    assert_eq!(client.line(), "finalizers ran true failed 0");
    writer.join().unwrap().unwrap();
}

#[test]
fn log_prints_its_values_like_print_and_checks_the_level() {
    let server = api();
    let mut client = command(&server, "log");
    let answer = client.line();
    let (single, level) = answer.split_once('|').unwrap();
    for (what, outcome, name) in [
        ("no level", single, "\"hello\""),
        ("bad level", level, "\"verbose\""),
    ] {
        assert!(
            outcome.starts_with("false ")
                && outcome.contains(
                    "lunet.log: the level must be one of error, warn, info, debug, trace"
                )
                && outcome.contains(name),
            "{what}: {outcome}"
        );
    }
    let line = server.wait_log("log-check");
    assert!(
        line.contains("INFO") && line.ends_with("log-check\t1\t2.5\tnil\ttrue\t<tagged>"),
        "{line}"
    );
    let line = server.wait_log("log-single");
    assert!(
        line.contains("WARN") && line.ends_with("log-single"),
        "{line}"
    );
}
