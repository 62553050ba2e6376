//! The write bound of a socket holds across every session that writes to
//! it: past `--high-water` writers wait, the waiting room is bounded, and a
//! writer that cannot wait, or waits past the write timeout, gets
//! `nil, "overloaded"` with nothing of its write queued.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};

use common::{server_script, Server, Steps, DEADLINE};

/// `server-scripts/fanout.lua`: one subscriber that never reads, and
/// `count` messages of 1 KiB, each written to it by its own dispatch
/// session. The server's peak RSS grows by a small part of what was
/// written, and every write is either queued or refused "overloaded".
#[test]
fn fan_out_to_a_subscriber_that_never_reads_is_bounded_by_the_high_water_mark() {
    let count = 20_000;
    let server = Server::start(
        &server_script("fanout.lua"),
        // The writers left waiting give up after half a second.
        &[
            "--hosts",
            "1",
            "--high-water",
            "65536",
            "--write-timeout-ms",
            "500",
        ],
    );
    let mut subscriber = server.client();
    subscriber.send("sub\n");
    assert_eq!(subscriber.line(), "subscribed");
    let mut publisher = server.client();
    publisher.send("stats\n");
    assert_eq!(
        publisher.line(),
        "ok=0 overloaded=0 closed=0 done=0 subscribers=1"
    );
    let before = server.rss_kib();

    publisher.send(format!("pub {count} 1024\n"));
    assert_eq!(publisher.line(), format!("sent {count}"));
    let stats = loop {
        publisher.send("stats\n");
        let stats = publisher.line();
        if stats.contains(&format!("done={count} ")) {
            break stats;
        }
    };
    let field = |name: &str| -> u64 {
        let value = stats
            .split(' ')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| server.fail(&format!("no {name} in {stats:?}")));
        value.parse().unwrap()
    };
    assert_eq!(field("ok") + field("overloaded"), count, "{stats}");
    assert_eq!(field("closed"), 0, "{stats}");
    // The kernel's socket buffers take a few MiB; the rest is refused.
    assert!(field("overloaded") > count / 2, "{stats}");

    let written_kib = count * 1024 / 1024;
    let growth = server.peak_rss_kib().saturating_sub(before);
    assert!(
        growth < written_kib / 4,
        "peak RSS grew by {growth} KiB for {written_kib} KiB written ({stats})"
    );
}

/// A peer that accepts and does not read until told.
fn silent_peer() -> (u16, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener.local_addr().unwrap().port(), listener)
}

/// Connects the steps' session (as global `s`) to the silent peer of
/// `getenv('peer')` and writes 8 MiB: admitted whole (the output was
/// empty), and more than the kernel takes from a peer that does not read,
/// so the socket stays past its mark. Returns the peer's end.
fn past_the_mark(steps: &mut Steps, listener: &TcpListener) -> TcpStream {
    steps.expect(
        "s = assert(lunet.connect(getenv('peer'))) \
         return s:write(('x'):rep(8 * 1024 * 1024))",
        "true true nil",
    );
    listener.accept().unwrap().0
}

/// Reads from lunet until what came ends with `end`; everything read.
fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    while !received.ends_with(end) {
        let n = stream.read(&mut buffer).expect("read from lunet");
        assert!(n > 0, "lunet closed after {} bytes", received.len());
        received.extend_from_slice(&buffer[..n]);
    }
    received
}

#[test]
fn a_writer_that_cannot_wait_or_waits_too_long_is_overloaded_and_queues_nothing() {
    let (port, listener) = silent_peer();
    let (_server, mut steps) = Steps::start(&[
        &format!("peer=127.0.0.1:{port}"),
        "--high-water",
        "65536",
        "--write-timeout-ms",
        "200",
    ]);
    let mut stream = past_the_mark(&mut steps, &listener);
    // Inside a gsub callback the writer cannot yield: refused at once.
    steps.expect(
        "local r ('.'):gsub('.', function() r = { s:write('refused') } end) \
         return r[1], r[2]",
        "true nil 'overloaded'",
    );
    // A writer that may wait, past --write-timeout-ms.
    steps.expect("return s:write('late')", "true nil 'overloaded'");
    // A socket timeout of its own takes the place of --write-timeout-ms.
    steps.expect(
        "s:settimeout(100) return s:write('late')",
        "true nil 'overloaded'",
    );
    steps.expect("s:settimeout(0) return 1", "true 1");

    // The next write waits for the peer to read, then is queued.
    steps.start_step("return s:write('END')");
    let received = read_until(&mut stream, b"END");
    assert_eq!(steps.line(), "true true nil");
    assert_eq!(received.len(), 8 * 1024 * 1024 + 3);
    assert!(received[..8 * 1024 * 1024].iter().all(|&b| b == b'x'));
}

#[test]
fn writers_waiting_for_room_are_served_in_turn_when_the_peer_reads() {
    let (port, listener) = silent_peer();
    let (_server, mut steps) =
        Steps::start(&[&format!("peer=127.0.0.1:{port}"), "--high-water", "65536"]);
    let mut stream = past_the_mark(&mut steps, &listener);
    // Three writers wait, in this order; a fourth with 64 KiB does not fit
    // the waiting room (the mark) and is refused at once.
    steps.expect(
        "results = {} \
         for i = 1, 3 do lunet.fork(function() results[i] = s:write('<', i, '>') end) end \
         lunet.sleep(20) \
         return s:write(('y'):rep(65536))",
        "true nil 'overloaded'",
    );
    steps.start_step(
        "while #results < 3 do lunet.sleep(5) end \
         return results[1], results[2], results[3]",
    );
    let received = read_until(&mut stream, b"<3>");
    assert_eq!(steps.line(), "true true true true");
    assert_eq!(&received[8 * 1024 * 1024..], b"<1><2><3>");
}
