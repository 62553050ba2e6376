//! HTTP helpers shared by the tests of lunet.http: a response read off a
//! raw connection (any framing), curl, a refused request.

// Each test file compiles this module on its own and uses a different part.
#![allow(dead_code)]

use std::process::{Command, Output};

use crate::common::{abbreviate, Client, Server, DEADLINE};

/// A response read off a raw connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the field `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the field `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response. `head_request`: the request was HEAD (no body
/// whatever the head says). Bodies framed by Content-Length, chunked, or
/// (without either) by the end of the connection.
#[track_caller]
pub fn read_response(client: &mut Client, head_request: bool) -> Response {
    let status_line = client.line();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| client.fail(&format!("bad status line {status_line:?}")));
    let mut headers = Vec::new();
    loop {
        let line = client.line();
        let line = line
            .strip_suffix('\r')
            .unwrap_or_else(|| client.fail(&format!("header without CR: {line:?}")));
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| client.fail(&format!("bad header {line:?}")));
        headers.push((name.to_lowercase(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return response;
    }
    if response.header("transfer-encoding") == Some("chunked") {
        loop {
            let size_line = client.line();
            let size = usize::from_str_radix(size_line.trim_end(), 16)
                .unwrap_or_else(|_| client.fail(&format!("bad chunk size {size_line:?}")));
            if size == 0 {
                assert_eq!(client.line(), "\r", "end of the chunked body");
                break;
            }
            let mut chunk = client.bytes(size + 2);
            assert_eq!(&chunk[size..], b"\r\n", "chunk end");
            chunk.truncate(size);
            response.body.extend_from_slice(&chunk);
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .unwrap_or_else(|_| client.fail(&format!("bad Content-Length {length:?}")));
        response.body = client.bytes(length);
    } else {
        response.body = client.rest();
    }
    response
}

/// Sends `request` on a new connection and reads the response.
#[track_caller]
pub fn exchange(server: &Server, port: u16, request: &str) -> (Response, Client) {
    let mut client = server.client_on(port);
    client.send(request);
    let head = request.starts_with("HEAD ");
    let response = read_response(&mut client, head);
    (response, client)
}

/// Sends `request` on a new connection and expects `status`, a
/// `Connection: close`, and the connection closed after it.
#[track_caller]
pub fn rejected(server: &Server, port: u16, request: &str, status: u16) -> Response {
    let (answer, mut client) = exchange(server, port, request);
    assert_eq!(
        answer.status,
        status,
        "{} got {} {}",
        abbreviate(request),
        answer.status,
        abbreviate(&answer.text())
    );
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    client.end();
    answer
}

/// Runs curl (silent, bounded by DEADLINE) and requires success.
#[track_caller]
pub fn curl(args: &[&str]) -> Output {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time"])
        .arg(DEADLINE.as_secs().to_string())
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        output.status.success(),
        "curl {args:?}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a Python script (the test environment's python3 first on PATH)
/// with a bounded time; returns its stdout, panicking with its stderr on
/// failure.
#[track_caller]
pub fn python(script: &str) -> String {
    let output = Command::new("timeout")
        .arg(DEADLINE.as_secs().to_string())
        .arg("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python3 failed: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
