//! `server-scripts/http_hello.lua` (on lunet.http) with curl and with raw
//! requests: keep-alive, bodies, pipelining, and malformed input. The
//! tests of the common behaviour also run against the plain-Lua example,
//! `server-scripts/http_hello_lua.lua`.

mod common;

mod http_support;

use common::{server_script, End, Server};
use http_support::{curl, read_response, rejected, Response};
use std::io::Read;

fn http(args: &[&str]) -> Server {
    Server::start(&server_script("http_hello.lua"), args)
}

/// Both hello servers: the one on lunet.http and the plain-Lua example.
fn both() -> [Server; 2] {
    [
        http(&[]),
        Server::start(&server_script("http_hello_lua.lua"), &[]),
    ]
}

#[track_caller]
fn assert_hello(response: &Response) {
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, b"hello world", "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain"),
        "{response:?}"
    );
    assert_eq!(
        response.header("content-length"),
        Some("11"),
        "{response:?}"
    );
}

#[test]
fn curl_get() {
    for server in both() {
        let output = curl(&[&format!("http://127.0.0.1:{}/any/path?x=1", server.port())]);
        assert_eq!(String::from_utf8_lossy(&output.stdout), "hello world");
    }
}

#[test]
fn curl_keep_alive_reuses_the_connection() {
    for server in both() {
        let base = format!("http://127.0.0.1:{}", server.port());
        let output = curl(&[
            "--verbose",
            "--write-out",
            " connects=%{num_connects}\n",
            &format!("{base}/first"),
            &format!("{base}/second"),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stdout, "hello world connects=1\nhello world connects=0\n",
            "curl stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("Re-using existing connection"),
            "curl stderr:\n{stderr}"
        );
    }
}

#[test]
fn curl_post_body_is_consumed() {
    for server in both() {
        let base = format!("http://127.0.0.1:{}", server.port());
        let output = curl(&["--data", "name=value&other=1", &format!("{base}/form")]);
        assert_eq!(String::from_utf8_lossy(&output.stdout), "hello world");

        // A 200 KiB body, then a GET on the same connection: if the body were
        // not consumed, the GET would be read from the middle of it.
        let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("http_post_body.bin");
        std::fs::write(&file, vec![b'b'; 200 * 1024]).unwrap();
        let output = curl(&[
            "--write-out",
            " connects=%{num_connects}\n",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("{base}/upload"),
            "--next",
            "--write-out",
            " connects=%{num_connects}\n",
            &format!("{base}/after"),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "hello world connects=1\nhello world connects=0\n"
        );
    }
}

#[test]
fn curl_head_has_no_body() {
    for server in both() {
        let output = curl(&["--head", &format!("http://127.0.0.1:{}/", server.port())]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}");
        assert!(stdout.contains("Content-Length: 11"), "{stdout}");
        assert!(!stdout.contains("hello world"), "{stdout}");
    }
}

#[test]
fn pipelined_requests_in_one_write() {
    for server in both() {
        let mut client = server.client();
        let request = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
        client.send(request.repeat(3));
        for _ in 0..3 {
            assert_hello(&read_response(&mut client, false));
        }
        // Still open for more.
        client.send(request);
        assert_hello(&read_response(&mut client, false));
    }
}

#[test]
fn pipelined_post_and_get() {
    for server in both() {
        let mut client = server.client();
        client.send(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
         GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_hello(&read_response(&mut client, false));
        assert_hello(&read_response(&mut client, false));
    }
}

#[test]
fn request_split_across_segments() {
    for server in both() {
        let mut client = server.client();
        for part in [
            "GE",
            "T / HTTP/1.1\r",
            "\nHost: x\r\nContent-Le",
            "ngth: 3\r\n\r\nab",
            "c",
        ] {
            client.send(part);
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        assert_hello(&read_response(&mut client, false));
    }
}

#[test]
fn connection_close_is_honoured() {
    for server in both() {
        let mut client = server.client();
        client.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = read_response(&mut client, false);
        assert_hello(&answer);
        assert_eq!(answer.header("connection"), Some("close"));
        assert_eq!(client.end(), End::Closed);
    }
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    for server in both() {
        let mut client = server.client();
        client.send("GET / HTTP/1.0\r\n\r\n");
        assert_hello(&read_response(&mut client, false));
        assert_eq!(client.end(), End::Closed);

        let mut client = server.client();
        client.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let answer = read_response(&mut client, false);
        assert_hello(&answer);
        assert_eq!(answer.header("connection"), Some("keep-alive"));
        client.send("GET / HTTP/1.0\r\n\r\n");
        assert_hello(&read_response(&mut client, false));
        assert_eq!(client.end(), End::Closed);
    }
}

#[test]
fn chunked_body_is_consumed() {
    for server in both() {
        let mut client = server.client();
        client.send(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n\
         GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_hello(&read_response(&mut client, false));
        assert_hello(&read_response(&mut client, false));
    }
}

#[test]
fn malformed_request_line_gets_400() {
    let server = http(&[]);
    rejected(&server, server.port(), "GARBAGE\r\n\r\n", 400);
    rejected(&server, server.port(), "GET /\r\n\r\n", 400);
    rejected(
        &server,
        server.port(),
        "GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    );
    rejected(
        &server,
        server.port(),
        "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        505,
    );
}

#[test]
fn malformed_header_gets_400() {
    let server = http(&[]);
    rejected(
        &server,
        server.port(),
        "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        400,
    );
    rejected(
        &server,
        server.port(),
        "GET / HTTP/1.1\r\nHost: x\r\n Folded: value\r\n\r\n",
        400,
    );
    rejected(
        &server,
        server.port(),
        "GET / HTTP/1.1\r\nHost: x\r\n: no name\r\n\r\n",
        400,
    );
    rejected(&server, server.port(), "GET / HTTP/1.1\r\n\r\n", 400);
}

#[test]
fn bad_content_length_gets_400() {
    let server = http(&[]);
    for length in ["abc", "-1", "3\r\nContent-Length: 4"] {
        rejected(
            &server,
            server.port(),
            &format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabcd"),
            400,
        );
    }
}

#[test]
fn body_over_1_mib_gets_413() {
    let server = http(&[]);
    // Headers only: the body is never sent, so nothing is left unread.
    rejected(
        &server,
        server.port(),
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n",
        413,
    );
}

#[test]
fn unknown_transfer_encoding_gets_501() {
    let server = http(&[]);
    rejected(
        &server,
        server.port(),
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
}

#[test]
fn head_over_32_kib_gets_431() {
    let server = http(&[]);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Long: {}\r\n\r\n",
        "a".repeat(33 * 1024)
    );
    rejected(&server, server.port(), &request, 431);
    // Others are unaffected.
    let mut client = server.client();
    client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_hello(&read_response(&mut client, false));
}

#[test]
fn request_line_over_8_kib_gets_414() {
    let server = http(&[]);
    // Unterminated: refused as soon as the line is too long.
    let request = format!("GET /{}", "a".repeat(9000));
    rejected(&server, server.port(), &request, 414);
}

#[test]
fn many_keep_alive_requests_on_one_connection() {
    for server in both() {
        let mut client = server.client();
        for i in 0..500 {
            client.send(format!(
                "GET /{i} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n"
            ));
            assert_hello(&read_response(&mut client, false));
        }
        // Nothing extra was sent.
        client.shutdown_write();
        let mut rest = Vec::new();
        client.reader().read_to_end(&mut rest).unwrap();
        assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}
