//! Outbound pools: `sock:setkeepalive` and `lunet.connect` drawing from the
//! pool (`tests/scripts/pool.lua` under `lunet run`), against a line server
//! in this test that names each connection and counts them.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{run_script, test_script};

/// A line server: WHO -> "conn N"; EXTRA -> "ok" and "extra"; CLOSE ->
/// "ok" then close; LATER -> "ok", then "late" 100 ms later. Counts the
/// connections it accepted.
fn line_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut writer = stream.try_clone().unwrap();
                let reader = BufReader::new(stream);
                for line in reader.lines() {
                    let Ok(line) = line else { return };
                    let reply = match line.as_str() {
                        "WHO" => format!("conn {n}\n"),
                        "EXTRA" => "ok\nextra\n".to_string(),
                        "CLOSE" => {
                            let _ = writer.write_all(b"ok\n");
                            return;
                        }
                        "LATER" => {
                            let _ = writer.write_all(b"ok\n");
                            thread::sleep(Duration::from_millis(100));
                            "late\n".to_string()
                        }
                        _ => "?\n".to_string(),
                    };
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[test]
fn setkeepalive_pools_and_lunet_connect_reuses() {
    let (port, accepted) = line_server();
    let target = format!("target=127.0.0.1:{port}");
    let ran = run_script(
        &test_script("pool.lua"),
        &[&target],
        Duration::from_secs(20),
    )
    .must_succeed("pool.lua failed");
    ran.expect("keepalive", "true");
    ran.expect("old_socket", "nil closed");
    ran.expect("old_read", "nil closed nil");
    ran.expect("reused", "true");
    ran.expect("closing_keepalive", "true");
    ran.expect("fresh_after_close", "true");
    ran.expect("unread", "nil unread data");
    ran.expect("unread_after", "nil closed");
    ran.expect("later_keepalive", "true");
    ran.expect_parts("fresh_after_later", "true ", &[]);
    ran.expect("idle_keepalive", "true");
    ran.expect("fresh_after_idle", "true");
    ran.expect("sized", "true true true");
    ran.expect("sized_reuse", "true true true");
    ran.expect("sized_names", "true true");
    ran.expect_parts(
        "busy",
        "false",
        &["sock:setkeepalive: socket busy: a session waits on it"],
    );
    ran.expect(
        "bad_idle",
        "false sock:setkeepalive: idle_ms and size must be numbers >= 0",
    );
    ran.expect("last_keepalive", "true");
    ran.expect("done", "true");
    // 1 (reused) + fresh after close + talker + after the talker + after
    // idle + 3 sized + 1 more sized + busy + last.
    assert_eq!(accepted.load(Ordering::SeqCst), 11, "{}", ran.log);
}

#[test]
fn an_accepted_socket_cannot_go_to_a_pool() {
    let ran = run_script(
        &test_script("pool_accepted.lua"),
        &[],
        Duration::from_secs(20),
    );
    ran.expect_parts(
        "accepted",
        "false ",
        &["sock:setkeepalive: only connections made by lunet.connect go back to a pool"],
    );
}
