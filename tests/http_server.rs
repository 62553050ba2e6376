//! lunet.http's server (`tests/scripts/http_server.lua`): requests parsed in
//! Rust, responses, the router, keep-alive, pipelining, `Expect:
//! 100-continue`, bounds and malformed input, handler errors; with raw
//! connections, curl and Python's http.client.

mod common;
mod http_support;

use std::collections::HashMap;
use std::time::Duration;

use common::{test_script, End, Server};
use http_support::{curl, exchange, python, read_response, rejected};

/// The server of tests/scripts/http_server.lua: `ports()[0]` has the
/// defaults, `ports()[1]` small limits (max_body 64, max_headers 8,
/// max_head 512, max_request_line 128, keepalive 400 ms, timeout 300 ms).
fn server() -> Server {
    Server::start_listeners(&test_script("http_server.lua"), &[], 2)
}

fn small(server: &Server) -> u16 {
    server.ports()[1]
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// The "key=value" lines of /echo as a map.
fn echoed(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_request_is_parsed_in_one_piece() {
    let server = server();
    let (response, _) = exchange(
        &server,
        server.port(),
        "GET /echo/a%20b?x=1&y=two+words&x=3&flag HTTP/1.1\r\nHost: test\r\nX-Thing: One\r\nx-thing: Two\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{response:?}");
    let seen = echoed(&response.text());
    let expected = [
        ("method", "GET"),
        ("path", "/echo/a b"),
        ("param.name", "a b"),
        ("query.x", "1,3"),
        ("query.y", "two words"),
        ("query.flag", ""),
        ("header.host", "test"),
        ("header.accept", "*/*"),
        ("header.x-thing", "One,Two"),
    ];
    for (key, value) in expected {
        assert_eq!(
            seen.get(key).map(String::as_str),
            Some(value),
            "{key} in {seen:?}"
        );
    }
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
}

#[test]
fn a_request_without_a_query_has_an_empty_query_table() {
    let server = server();
    let (response, _) = exchange(&server, server.port(), &get("/echo/plain"));
    let seen = echoed(&response.text());
    assert!(!seen.keys().any(|k| k.starts_with("query.")), "{seen:?}");
    assert_eq!(seen.get("path").map(String::as_str), Some("/echo/plain"));
}

#[test]
fn responses_carry_date_type_and_length() {
    let server = server();
    let (response, mut client) = exchange(&server, server.port(), &get("/hello"));
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello");
    assert_eq!(response.header("content-length"), Some("5"));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    let date = response.header("date").expect("a Date field");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    assert_eq!(
        response.header("connection"),
        None,
        "keep-alive is the default"
    );
    // The connection stays open for the next request.
    client.send(get("/hello"));
    assert_eq!(read_response(&mut client, false).text(), "hello");
}

#[test]
fn router_404_405_params_json_and_head() {
    let server = server();
    let port = server.port();
    let (response, _) = exchange(&server, port, &get("/nowhere"));
    assert_eq!(response.status, 404);
    let (response, _) = exchange(
        &server,
        port,
        "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    let (response, _) = exchange(&server, port, "PATCH /items/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("DELETE, PUT"));
    let (response, _) = exchange(
        &server,
        port,
        "PUT /items/42 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(response.status, 201);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), r#"{"id":"42"}"#);
    let (response, _) = exchange(
        &server,
        port,
        "DELETE /items/42 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(response.status, 204);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("content-type"), None);
    let (response, _) = exchange(&server, port, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("5"));
    assert!(response.body.is_empty());
    let (response, _) = exchange(&server, port, "PURGE /echo/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"["PURGE","x"]"#);
}

#[test]
fn a_handler_that_sends_nothing_answers_an_empty_200() {
    let server = server();
    let (response, _) = exchange(&server, server.port(), &get("/nothing"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("0"));
    assert_eq!(response.header("content-type"), None);
}

#[test]
fn statuses_without_a_body() {
    let server = server();
    for (code, has_body) in [
        (200, true),
        (304, false),
        (204, false),
        (418, true),
        (599, true),
    ] {
        let (response, _) = exchange(&server, server.port(), &get(&format!("/status/{code}")));
        assert_eq!(response.status, code);
        assert_eq!(
            response.header("content-length").is_some(),
            has_body,
            "{response:?}"
        );
        assert_eq!(response.body.is_empty(), !has_body, "{response:?}");
    }
}

#[test]
fn bodies_by_length_and_chunked() {
    let server = server();
    let mut client = server.client();
    client.send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let response = read_response(&mut client, false);
    assert_eq!(
        (response.status, response.text()),
        (200, "hello world".into())
    );
    assert_eq!(response.header("x-length"), Some("11"));
    client.send(
        "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n",
    );
    let response = read_response(&mut client, false);
    assert_eq!(response.text(), "hello world");
    // A 500 KB body arriving in pieces.
    let big = "x".repeat(500_000);
    client.send(format!(
        "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        big.len()
    ));
    for piece in big.as_bytes().chunks(70_000) {
        client.send(piece);
    }
    let response = read_response(&mut client, false);
    assert_eq!(response.body.len(), big.len());
    assert_eq!(response.header("x-length"), Some("500000"));
}

#[test]
fn unread_bodies_are_dropped_and_pipelining_works() {
    let server = server();
    let mut client = server.client();
    client.send(
        "POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\nignored\
         GET /hello HTTP/1.1\r\nHost: t\r\n\r\n\
         POST /ignore HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         GET /slow HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let texts: Vec<String> = (0..5)
        .map(|_| read_response(&mut client, false).text())
        .collect();
    assert_eq!(texts, ["ignored", "hello", "ignored", "slow", "hello"]);
}

#[test]
fn streaming_is_chunked_and_http_1_0_streams_until_close() {
    let server = server();
    let (response, mut client) = exchange(&server, server.port(), &get("/stream"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.text(), "piece 1\npiece 2\npiece 3\n");
    client.send(get("/hello"));
    assert_eq!(read_response(&mut client, false).text(), "hello");

    let (response, mut client) = exchange(
        &server,
        server.port(),
        "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(response.header("transfer-encoding"), None);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.text(), "piece 1\npiece 2\npiece 3\n");
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn keep_alive_rules() {
    let server = server();
    let (response, mut client) = exchange(&server, server.port(), &get("/close"));
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(client.end(), End::Closed);

    let (response, mut client) = exchange(
        &server,
        server.port(),
        "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(client.end(), End::Closed);

    let (response, mut client) = exchange(&server, server.port(), "GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(response.text(), "hello");
    assert_eq!(client.end(), End::Closed);

    let (response, mut client) = exchange(
        &server,
        server.port(),
        "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(response.header("connection"), Some("keep-alive"));
    client.send("GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(read_response(&mut client, false).text(), "hello");
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = server();
    let (response, mut client) = exchange(&server, small(&server), &get("/hello"));
    assert_eq!(response.text(), "hello");
    // keepalive_timeout = 400 ms on this listener: the server closes it
    // (the client's read is bounded by DEADLINE).
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn a_slow_client_is_served_and_a_stalled_one_gets_408() {
    let server = server();
    // One byte at a time, each well within the 300 ms timeout.
    let mut client = server.client_on(small(&server));
    for byte in get("/hello").bytes() {
        client.send([byte]);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(read_response(&mut client, false).text(), "hello");
    // Half a head, then nothing.
    let mut client = server.client_on(small(&server));
    client.send("GET /hello HTTP/1.1\r\nHo");
    let response = read_response(&mut client, false);
    assert_eq!(response.status, 408);
    assert_eq!(client.end(), End::Closed);
    // Others are served meanwhile and after.
    let (response, _) = exchange(&server, server.port(), &get("/hello"));
    assert_eq!(response.text(), "hello");
}

#[test]
fn expect_100_continue_is_answered_when_the_handler_reads_the_body() {
    let server = server();
    let mut client = server.client();
    client.send(
        "POST /body HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // The interim answer comes before any byte of the body was sent.
    let interim = read_response(&mut client, false);
    assert_eq!(interim.status, 100);
    client.send("hello");
    let response = read_response(&mut client, false);
    assert_eq!((response.status, response.text()), (200, "hello".into()));
    assert_eq!(response.header("connection"), None);

    // A handler that answers without reading: no 100, and the connection
    // closes (the client may still send the body it was told to hold).
    let mut client = server.client();
    client.send(
        "POST /ignore HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let response = read_response(&mut client, false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(client.end(), End::Closed);
}

#[test]
fn curl_gets_100_continue_and_sends_the_body_after_it() {
    let server = server();
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("http_server_expect.bin");
    std::fs::write(&file, vec![b'e'; 5000]).unwrap();
    let output = curl(&[
        "--trace-ascii",
        "-",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://127.0.0.1:{}/body", server.port()),
    ]);
    let trace = String::from_utf8_lossy(&output.stdout);
    let continue_at = trace
        .find("HTTP/1.1 100 Continue")
        .unwrap_or_else(|| panic!("no 100 Continue in the trace:\n{trace}"));
    let body_at = trace
        .find("=> Send data")
        .unwrap_or_else(|| panic!("curl sent no body:\n{trace}"));
    assert!(
        continue_at < body_at,
        "curl sent the body before the 100 Continue:\n{trace}"
    );
    assert!(trace.contains("X-Length: 5000"), "{trace}");
}

#[test]
fn curl_keep_alive_reuses_the_connection() {
    let server = server();
    let base = format!("http://127.0.0.1:{}", server.port());
    let output = curl(&[
        "--write-out",
        " connects=%{num_connects}\n",
        &format!("{base}/hello"),
        &format!("{base}/hello"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello connects=1\nhello connects=0\n"
    );
}

#[test]
fn python_http_client_talks_to_it() {
    let server = server();
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
c.request("POST", "/body", body=b"from python", headers={{"X-A": "1"}})
r = c.getresponse()
print(r.status, r.getheader("X-Length"), r.read().decode())
c.request("GET", "/stream")
r = c.getresponse()
print(r.status, r.getheader("Transfer-Encoding"), r.read().decode().replace("\n", "|"))
c.request("GET", "/echo/py?k=v")
r = c.getresponse()
print(r.status, r.read().decode().replace("\n", "|"))
"#,
        port = server.port()
    );
    let out = python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "200 11 from python");
    assert_eq!(lines[1], "200 chunked piece 1|piece 2|piece 3|");
    assert!(lines[2].starts_with("200 "), "{out}");
    assert!(lines[2].contains("|query.k=v"), "{out}");
}

#[test]
fn a_handler_error_answers_500_logs_and_closes() {
    let server = server();
    let (response, mut client) = exchange(&server, server.port(), &get("/fail"));
    assert_eq!(response.status, 500);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(client.end(), End::Closed);
    let line = server.wait_log("boom in the handler");
    assert!(line.contains("GET /fail"), "{line}");
    server.wait_log("stack traceback");

    // After a piece was sent, nothing more can be said: the connection
    // closes with the chunked body unfinished.
    let mut client = server.client();
    client.send(get("/fail-late"));
    let head = client.line();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let rest = String::from_utf8_lossy(&client.rest()).into_owned();
    assert!(rest.contains("7\r\npartial\r\n"), "{rest}");
    assert!(!rest.contains("0\r\n\r\n"), "{rest}");
    server.wait_log("late boom");
    // The server goes on.
    let (response, _) = exchange(&server, server.port(), &get("/hello"));
    assert_eq!(response.text(), "hello");
}

#[test]
fn misuse_raises_with_a_clear_message() {
    let server = server();
    let (response, _) = exchange(&server, server.port(), &get("/misuse"));
    assert_eq!(response.status, 200);
    assert_eq!(response.all("x-set"), vec!["one", "two"]);
    let text = response.text();
    for expected in [
        "res:header: invalid header value (a control byte: CR, LF, NUL...)",
        "res:header: invalid header name",
        "res:header: Content-Length and Transfer-Encoding are set by lunet",
        "res:status: expected a status code within 100-999, got 42",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert!(!response
        .headers
        .iter()
        .any(|(n, _)| n == "x-bad" || n == "set-cookie"));
    server.wait_log("misuse after send: res:send: the response was already sent / res:status: the response head was already sent");

    // Both on one connection: one host VM keeps the request.
    let (response, mut client) = exchange(&server, server.port(), &get("/keep"));
    assert_eq!(response.text(), "kept");
    client.send(get("/use-kept"));
    let response = read_response(&mut client, false);
    assert_eq!(
        response.text(),
        "false res:send: the request is finished (its handler returned)\n\
         false req:body: the request is finished (its handler returned)\n\
         false req.headers: the request is finished (the connection moved on)"
    );
}

#[test]
fn limits_of_the_head() {
    let server = server();
    let port = small(&server);
    // max_request_line = 128
    rejected(&server, port, &get(&format!("/{}", "a".repeat(200))), 414);
    // max_headers = 8
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    rejected(
        &server,
        port,
        &format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"),
        431,
    );
    // max_head = 512
    rejected(
        &server,
        port,
        &format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Long: {}\r\n\r\n",
            "v".repeat(600)
        ),
        431,
    );
    // max_body = 64, declared.
    rejected(
        &server,
        port,
        "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n",
        413,
    );
    // The same request fits the default listener.
    let (response, _) = exchange(
        &server,
        server.port(),
        &get(&format!("/echo/{}", "a".repeat(200))),
    );
    assert_eq!(response.status, 200);
}

#[test]
fn a_chunked_body_over_the_limit_gets_413() {
    let server = server();
    let chunk = "y".repeat(40);
    let request = format!(
        "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = rejected(&server, small(&server), &request, 413);
    assert_eq!(answer.text(), "body larger than the limit\n");
    server.wait_log("body failed: body too large");
}

#[test]
fn malformed_requests_get_their_status_and_a_close() {
    let server = server();
    let port = server.port();
    let cases: &[(&str, u16)] = &[
        ("GARBAGE\r\n\r\n", 400),
        ("GET /\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        ("GET / HTTP/1.1\r\nHost: t\r\nNo colon\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\n Folded: v\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nX\x7f: v\r\n\r\n", 400),
        ("GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET /?q=%g1 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nExpect: magic\r\n\r\n", 417),
        // Smuggling: both framings, two lengths, chunked not last.
        (
            "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        (
            "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            400,
        ),
        (
            "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        ("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        rejected(&server, port, request, *status);
    }
    server.wait_log("400 to 127.0.0.1:");
    // Still serving.
    let (response, _) = exchange(&server, port, &get("/hello"));
    assert_eq!(response.text(), "hello");
}

#[test]
fn bad_chunks_get_400_and_close() {
    let server = server();
    for body in [
        "zz\r\nabc\r\n0\r\n\r\n",
        "3\r\nabcXY0\r\n\r\n",
        "3\nabc\r\n0\r\n\r\n",
        "11111111111111111\r\n",
        "3;\0\r\nabc\r\n0\r\n\r\n",
    ] {
        let request =
            format!("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let answer = rejected(&server, server.port(), &request, 400);
        assert!(!answer.text().is_empty());
    }
}

#[test]
fn a_peer_that_leaves_mid_body_costs_only_its_connection() {
    let server = server();
    let mut client = server.client_on(small(&server));
    client.send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nonly twenty bytes...");
    client.shutdown_write();
    assert_eq!(client.end(), End::Closed);
    server.wait_log("body failed: closed");
    // A body that never comes: the 300 ms timeout.
    let mut client = server.client_on(small(&server));
    client.send("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\nten bytes.");
    let response = read_response(&mut client, false);
    assert_eq!(response.status, 408);
    assert_eq!(client.end(), End::Closed);
    server.wait_log("body failed: timeout");
    let (response, _) = exchange(&server, server.port(), &get("/hello"));
    assert_eq!(response.text(), "hello");
}
