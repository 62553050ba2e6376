//! lunet.ws: a server on lunet.http (`tests/scripts/ws_server.lua`) against
//! Python's websocket-client and against raw frames that break the rules
//! (unmasked from a client, reserved opcode, bad UTF-8, bad close code,
//! oversize); and lunet.ws.connect (`tests/scripts/ws_client.lua`) against
//! lunet's own server and raw servers that answer badly.

mod common;
mod http_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use common::{closed_port, run_script, test_script, Client, End, Server};
use http_support::{python, read_response};
use lunet_core::proto::websocket::accept_key;

fn server() -> Server {
    Server::start(&test_script("ws_server.lua"), &[])
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// A raw client after a successful upgrade on `path`.
fn upgraded(server: &Server, path: &str) -> Client {
    let mut client = server.client();
    client.send(format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ));
    let response = read_response(&mut client, false);
    assert_eq!(response.status, 101, "{response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(accept_key(KEY.as_bytes()).as_str())
    );
    client
}

/// One frame: `first` is FIN/RSV/opcode, masked with MASK unless `mask`
/// is false.
fn frame(first: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![first];
    let bit = if mask { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(bit | payload.len() as u8);
    } else {
        out.push(bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    if mask {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one unmasked frame from the server: (first byte, payload).
fn read_frame(client: &mut Client) -> (u8, Vec<u8>) {
    let head = client.bytes(2);
    assert_eq!(head[1] & 0x80, 0, "a server's frame is not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let n = client.bytes(2);
            u16::from_be_bytes([n[0], n[1]]) as usize
        }
        127 => panic!("unexpected 64-bit length"),
        n => n as usize,
    };
    (head[0], client.bytes(len))
}

/// Sends `frames` and expects a close frame with `code`, then the end.
#[track_caller]
fn closed_with(server: &Server, path: &str, frames: &[Vec<u8>], code: u16) {
    let mut client = upgraded(server, path);
    for f in frames {
        client.send(f);
    }
    let (first, payload) = read_frame(&mut client);
    assert_eq!(first, 0x88, "a close frame");
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        code,
        "{:?}",
        String::from_utf8_lossy(&payload[2..])
    );
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn python_websocket_client_echo_ping_fragments_close() {
    let server = server();
    let script = format!(
        r#"
import websocket
ws = websocket.create_connection("ws://127.0.0.1:{port}/echo", timeout=10)
ws.send("héllo")
print("text", ws.recv())
ws.send_binary(b"\x00\x01\xff" * 30000)
data = ws.recv()
print("binary", type(data).__name__, len(data), data[:3] == b"\x00\x01\xff")
ws.send_frame(websocket.ABNF.create_frame("frag", websocket.ABNF.OPCODE_TEXT, 0))
ws.ping("p1")
ws.send_frame(websocket.ABNF.create_frame("mented", websocket.ABNF.OPCODE_CONT, 1))
opcode, data = ws.recv_data(control_frame=True)
print("pong", opcode == websocket.ABNF.OPCODE_PONG, data.decode())
print("joined", ws.recv())
ws.send("server-close")
opcode, frame = ws.recv_data_frame(control_frame=True)
print("server_close", opcode == websocket.ABNF.OPCODE_CLOSE, int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode())
ws2 = websocket.create_connection("ws://127.0.0.1:{port}/echo", timeout=10)
ws2.close(status=4001, reason=b"client done")
ws3 = websocket.create_connection("ws://127.0.0.1:{port}/proto", timeout=10, subprotocols=["chat"])
print("protocol", ws3.getsubprotocol())
ws4 = websocket.create_connection("ws://127.0.0.1:{port}/close-first", timeout=10)
print("first", ws4.recv())
opcode, frame = ws4.recv_data_frame(control_frame=True)
print("first_close", int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode())
"#,
        port = server.port()
    );
    let out = python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "text héllo",
            "binary bytes 90000 True",
            "pong True p1",
            "joined fragmented",
            "server_close True 1000 asked",
            "protocol chat",
            "first bye",
            "first_close 4000 done",
        ],
        "{out}"
    );
    server.wait_log("ws close 4001 client done");
}

#[test]
fn upgrade_refusals_get_their_status() {
    let server = server();
    let cases = [
        ("Sec-WebSocket-Version: 12\r\n", 426),
        ("", 426),
        ("Sec-WebSocket-Version: 13\r\n", 400),
    ];
    for (version, status) in cases {
        let mut client = server.client();
        // No key in the last case; a wrong or missing version before.
        let key = if status == 400 {
            String::new()
        } else {
            format!("Sec-WebSocket-Key: {KEY}\r\n")
        };
        client.send(format!(
            "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}{version}\r\n"
        ));
        let response = read_response(&mut client, false);
        assert_eq!(response.status, status, "{response:?}");
        if status == 426 {
            assert_eq!(response.header("sec-websocket-version"), Some("13"));
        }
        assert_eq!(response.header("connection"), Some("close"));
        assert_eq!(client.end(), End::Closed);
    }
    server.wait_log("upgrade refused: Sec-WebSocket-Version must be 13");
    // A plain GET of the same path is not an upgrade.
    let mut client = server.client();
    client.send("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_response(&mut client, false).status, 400);
}

#[test]
fn frames_that_break_the_rules_close_with_their_code() {
    let server = server();
    // Unmasked from a client.
    closed_with(&server, "/echo", &[frame(0x81, b"hi", false)], 1002);
    // Reserved opcode, reserved bit.
    closed_with(&server, "/echo", &[frame(0x83, b"x", true)], 1002);
    closed_with(&server, "/echo", &[frame(0xC1, b"x", true)], 1002);
    // Text that is not UTF-8.
    closed_with(&server, "/echo", &[frame(0x81, b"\xff\xfe", true)], 1007);
    // Bad close codes.
    closed_with(
        &server,
        "/echo",
        &[frame(0x88, &999u16.to_be_bytes(), true)],
        1002,
    );
    closed_with(
        &server,
        "/echo",
        &[frame(0x88, &1005u16.to_be_bytes(), true)],
        1002,
    );
    // A continuation with nothing to continue; a fragmented ping.
    closed_with(&server, "/echo", &[frame(0x80, b"x", true)], 1002);
    closed_with(&server, "/echo", &[frame(0x09, b"x", true)], 1002);
    // Oversize: one frame over max_frame (100), a message over
    // max_message (200) in fragments.
    closed_with(&server, "/small", &[frame(0x82, &[7; 101], true)], 1009);
    closed_with(
        &server,
        "/small",
        &[
            frame(0x02, &[7; 100], true),
            frame(0x00, &[7; 100], true),
            frame(0x80, &[7; 1], true),
        ],
        1009,
    );
    server.wait_log("ws ended: protocol error: unmasked frame from a client");
    // The server goes on.
    let mut client = upgraded(&server, "/echo");
    client.send(frame(0x81, b"still here", true));
    assert_eq!(read_frame(&mut client), (0x81, b"still here".to_vec()));
}

#[test]
fn a_peer_that_leaves_without_a_close_ends_recv() {
    let server = server();
    let mut client = upgraded(&server, "/echo");
    client.send(&frame(0x81, b"half", true)[..4]);
    client.shutdown_write();
    assert_eq!(client.end(), End::Closed);
    server.wait_log("ws ended: closed");
}

/// A raw server for the client's tests: reads the upgrade request and
/// answers by its path.
fn raw_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut path = String::new();
                let mut key = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(rest) = line.strip_prefix("GET ") {
                        path = rest.split(' ').next().unwrap_or("").to_string();
                    }
                    if let Some(value) = line.strip_prefix("Sec-WebSocket-Key: ") {
                        key = value.to_string();
                    }
                }
                let accept = accept_key(key.as_bytes());
                let switching = |accept: &str| {
                    format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")
                };
                let reply = match path.as_str() {
                    "/not-101" => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    "/bad-accept" => switching("AAAAAAAAAAAAAAAAAAAAAAAAAAA=").into_bytes(),
                    "/masked" => {
                        let mut reply = switching(&accept).into_bytes();
                        reply.extend_from_slice(&frame(0x81, b"masked", true));
                        reply
                    }
                    _ => b"garbage\r\n\r\n".to_vec(),
                };
                let _ = stream.write_all(&reply);
                thread::sleep(Duration::from_millis(300));
            });
        }
    });
    port
}

#[test]
fn lunet_ws_connect() {
    let raw = format!("raw=127.0.0.1:{}", raw_server());
    let closed = format!("closed={}", closed_port());
    let ran = run_script(
        &test_script("ws_client.lua"),
        &[&raw, &closed],
        Duration::from_secs(20),
    )
    .must_succeed("ws_client.lua failed");
    ran.expect("text", "text:5 text");
    ran.expect("binary", "binary:70000 text");
    ran.expect("close", "true");
    ran.expect("after_close", "nil closed");
    ran.expect(
        "/not-101",
        "nil websocket handshake: the server did not switch protocols",
    );
    ran.expect(
        "/bad-accept",
        "nil websocket handshake: wrong Sec-WebSocket-Accept",
    );
    ran.expect("/masked", "nil protocol error: masked frame from a server");
    ran.expect_parts("/garbage", "nil websocket handshake: ", &[]);
    ran.expect("wss", "nil wss: refused");
    ran.expect(
        "bad_url",
        "nil unsupported scheme 'http' in 'http://127.0.0.1:1/'",
    );
    ran.expect("refused", "nil refused");
}
