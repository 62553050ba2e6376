//! Backpressure: a client that does not read while the server writes
//! 50 MiB. `sock:write` must yield at the high-water mark so the server's
//! memory stays bounded, and every byte must still arrive, in order.

mod common;

use common::{test_script, Server};
use std::io::Read;
use std::thread;
use std::time::Duration;

const CHUNKS: usize = 800;
const CHUNK: usize = 64 * 1024;

/// How much the server may grow while the client is stalled. Well below the
/// 50 MiB it writes: a server that buffered everything (or most of it) fails.
/// Kernel socket buffers do not count in VmRSS.
const MAX_GROWTH_KIB: u64 = 24 * 1024;

fn expected_chunk(index: usize) -> Vec<u8> {
    format!("{index:07}\n").repeat(CHUNK / 8).into_bytes()
}

#[test]
fn slow_reader_gets_50_mib_intact_with_bounded_server_memory() {
    let server = Server::start(&test_script("slow_reader.lua"), &[]);
    let baseline = server.rss_kib();

    let mut client = server.client();
    // Stall: read nothing for a while and watch the server's memory.
    let mut peak = baseline;
    for _ in 0..30 {
        thread::sleep(Duration::from_millis(50));
        peak = peak.max(server.rss_kib());
    }

    let mut chunk = vec![0u8; CHUNK];
    for index in 1..=CHUNKS {
        if let Err(e) = client.reader().read_exact(&mut chunk) {
            client.fail(&format!("reading chunk {index} of {CHUNKS}: {e}"));
        }
        if chunk != expected_chunk(index) {
            let at = chunk
                .iter()
                .zip(expected_chunk(index))
                .position(|(a, b)| *a != b);
            client.fail(&format!(
                "chunk {index} differs at byte {at:?}: starts with {:?}",
                String::from_utf8_lossy(&chunk[..16])
            ));
        }
        if index % 100 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    // The handler returned: the server closes after the last byte.
    let trailing = client.rest();
    assert!(
        trailing.is_empty(),
        "{} bytes after the 50 MiB",
        trailing.len()
    );

    assert!(
        peak - baseline < MAX_GROWTH_KIB,
        "server VmRSS grew from {baseline} KiB to {peak} KiB (limit {MAX_GROWTH_KIB} KiB more) \
         while the client was not reading"
    );
}

#[test]
fn two_sessions_waiting_to_write_to_one_socket_both_finish() {
    use std::io::Read;
    let server = Server::start(&test_script("two_writers.lua"), &["--high-water", "262144"]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // Let both writers fill the socket and wait on it before reading.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    while !(text(&received).contains("END-A") && text(&received).contains("END-B")) {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => panic!(
                "read failed after {} bytes ({e}): a writer was never woken",
                received.len()
            ),
        }
    }
    let all = text(&received);
    assert!(all.contains("END-A"), "writer A never finished");
    assert!(all.contains("END-B"), "writer B never finished");
    assert_eq!(received.len(), 2 * 64 * 64 * 1024 + "\nEND-A\n".len() * 2);
}
