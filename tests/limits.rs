//! Configured bounds: `--max-conns` (over it connections are accepted and
//! closed, with a log line). Line length and write high-water bounds are in
//! `echo.rs` and `slow_reader.rs`.

mod common;

use common::{server_script, Server, DEADLINE};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Sends a line and says whether it came back (true) or the connection
/// ended (false); panics on anything else.
fn echoes(server: &Server, stream: &TcpStream, text: &str) -> bool {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // The server may already have closed it: a failed write means "ended".
    if (&*stream)
        .write_all(format!("{text}\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut line = String::new();
    match BufReader::new(stream).read_line(&mut line) {
        Ok(0) => false,
        Ok(_) if line == format!("{text}\n") => true,
        Ok(_) => server.fail(&format!("{text:?} was answered with {line:?}")),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        Err(e) => server.fail(&format!("waiting for the echo of {text:?}: {e}")),
    }
}

fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port()))
        .unwrap_or_else(|e| server.fail(&format!("connect: {e}")))
}

#[test]
fn max_conns_closes_connections_over_the_limit() {
    let server = Server::start(&server_script("echo.lua"), &["--max-conns", "5"]);
    let mut served = Vec::new();
    let mut turned_away = 0;
    for i in 0..8 {
        let stream = connect(&server);
        if echoes(&server, &stream, &format!("connection {i}")) {
            served.push(stream);
        } else {
            turned_away += 1;
        }
    }
    assert_eq!(
        (served.len(), turned_away),
        (5, 3),
        "(served, turned away) of 8 with --max-conns 5"
    );

    server.wait_log_where("a log line about the connection limit", |line| {
        let line = line.to_lowercase();
        line.contains("conn")
            && (line.contains("max") || line.contains("limit") || line.contains("too many"))
    });

    // The ones admitted still work.
    for (i, stream) in served.iter().enumerate() {
        assert!(
            echoes(&server, stream, &format!("again {i}")),
            "admitted connection {i} stopped echoing"
        );
    }

    // Closing one makes room for one more (the count drops asynchronously).
    drop(served.pop());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stream = connect(&server);
        if echoes(&server, &stream, "room again") {
            break;
        }
        if Instant::now() >= deadline {
            server.fail("a closed connection never freed its slot under --max-conns");
        }
        thread::sleep(Duration::from_millis(20));
    }
}
