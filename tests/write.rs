//! `sock:write`'s fast path (a C function on the raw Lua stack): values
//! as `tostring` shows them, misuse raised before anything is queued, a
//! closed socket, and the high-water mark. Driven through
//! `tests/scripts/steps.lua` against a plain loopback peer.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use common::{Steps, DEADLINE};

/// A peer that accepts one connection and sends back everything it read
/// once the connection ends.
fn peer() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all);
            let _ = sender.send(all);
        }
    });
    (port, receiver)
}

#[test]
fn write_queues_strings_and_numbers_as_tostring_shows_them() {
    let (port, received) = peer();
    let (_server, mut client) = Steps::start(&[&format!("peer=127.0.0.1:{port}")]);
    assert_eq!(
        client.run("s = assert(lunet.connect(getenv('peer'))) return true"),
        "true true"
    );
    assert_eq!(
        client.run("s:write('a', 1, -7, 2.5, 3.0, 1e20, 1/3, '|')"),
        "true true nil"
    );
    // Misuse raises, naming the argument, and queues nothing of the call.
    assert_eq!(
        client.run("select(2, pcall(s.write, s, 'lost', {})):match('sock:write: .*')"),
        "true 'sock:write: argument #2 must be a string or a number, got table'"
    );
    assert_eq!(
        client.run("select(2, pcall(s.write, s)):match('sock:write: .*')"),
        "true 'sock:write: argument #1 must be a string or a number, got nil'"
    );
    assert_eq!(
        client.run("local ok = s:write('\\0binary\\255', '') s:close() return ok"),
        "true true"
    );
    assert_eq!(client.run("s:write('after close')"), "true nil 'closed'");
    let bytes = received.recv_timeout(DEADLINE).expect("the peer's bytes");
    assert_eq!(
        bytes,
        b"a1-72.53.01e+200.33333333333333|\0binary\xff".to_vec(),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
}

#[test]
fn write_waits_past_the_high_water_mark_until_the_peer_reads() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_server, mut client) =
        Steps::start(&[&format!("peer=127.0.0.1:{port}"), "--high-water", "65536"]);
    client.start_step(
        "s = assert(lunet.connect(getenv('peer'))) \
         local chunk = ('x'):rep(65536) local n = 0 \
         for i = 1, 64 do assert(s:write(chunk)) n = n + #chunk end return n",
    );
    // The writes wait for the peer (4 MiB do not fit the socket buffers);
    // reading them all lets the step finish.
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut total = 0;
    let mut buffer = vec![0u8; 1 << 16];
    while total < 64 * 65536 {
        let n = stream.read(&mut buffer).expect("read from lunet");
        assert!(n > 0, "lunet closed after {total} bytes");
        total += n;
    }
    assert_eq!(client.line(), "true 4194304");
}
