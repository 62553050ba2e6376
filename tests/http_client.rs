//! lunet.http.request (`tests/scripts/http_client.lua` under `lunet run`):
//! against a lunet.http server and against a raw server in this test that
//! answers with every framing, redirects, and bad answers: a server that
//! dies mid-response, garbage, bad chunks, a body over the limit, silence.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{closed_port, run_script, test_script};

/// One request read off `reader`: method, target, header lines, body.
fn read_request(
    reader: &mut BufReader<TcpStream>,
) -> Option<(String, String, Vec<String>, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end().to_string();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        headers.push(header);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((method, target, headers, body))
}

/// The raw server: each connection serves requests until one of them ends
/// it. `/who` names the connection (keep-alive is visible).
fn raw_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let n = connections.fetch_add(1, Ordering::SeqCst) + 1;
            thread::spawn(move || serve(stream, n));
        }
    });
    port
}

fn serve(stream: TcpStream, n: usize) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut served = 0;
    while let Some((method, target, headers, body)) = read_request(&mut reader) {
        served += 1;
        let path = target.split('?').next().unwrap_or("").to_string();
        let plain = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let reply = match path.as_str() {
            "/chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n".to_string(),
            "/close-delimited" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
                return;
            }
            "/interim" => "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string(),
            "/head" => "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_string(),
            "/cookies" => "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n".to_string(),
            "/who" => plain(&format!("conn {n}")),
            // A keep-alive answer, then the connection's next request is
            // read and the connection closed without an answer: a pooled
            // connection gone stale after the client checked it.
            "/once" if served == 1 => plain(&format!("conn {n}")),
            "/once" => return,
            "/echo" => {
                // Sorted: a Lua table's fields come in no particular order
                // (the values of one field keep theirs).
                let mut fields: Vec<String> = headers
                    .iter()
                    .filter(|h| !h.to_ascii_lowercase().starts_with("host:"))
                    .cloned()
                    .collect();
                fields.sort();
                plain(&format!(
                    "{method} {target} {} [{}]",
                    String::from_utf8_lossy(&body),
                    fields.join("|")
                ))
            }
            "/redirect" => "HTTP/1.1 302 Found\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n".to_string(),
            "/redirect-loop" => "HTTP/1.1 307 Temporary Redirect\r\nLocation: /redirect-loop\r\nContent-Length: 0\r\n\r\n".to_string(),
            "/see-other" => "HTTP/1.1 303 See Other\r\nLocation: /final\r\nContent-Length: 0\r\n\r\n".to_string(),
            "/final" => plain(&format!("final {method}")),
            "/die-mid-body" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
                return;
            }
            "/die-before" => return,
            "/garbage" => {
                let _ = writer.write_all(b"SMTP ready\r\n\r\n");
                return;
            }
            "/bad-chunk" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
                return;
            }
            "/big" => plain(&"b".repeat(1000)),
            "/slow" => {
                thread::sleep(Duration::from_secs(3));
                return;
            }
            _ => plain("?"),
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn lunet_http_request() {
    let raw = format!("raw=127.0.0.1:{}", raw_server());
    let closed = format!("closed={}", closed_port());
    let ran = run_script(
        &test_script("http_client.lua"),
        &[&raw, &closed],
        Duration::from_secs(30),
    )
    .must_succeed("http_client.lua failed");
    ran.expect("lunet_get", "200 lunet GET /a text/plain");
    ran.expect("lunet_post", "200 payload POST yes application/json");
    ran.expect("chunked", "200 abcdefg");
    ran.expect("close_delimited", "200 until the end");
    ran.expect("interim", "200 ok");
    ran.expect("head", "200 0 1234");
    ran.expect("cookies", "table a=1,b=2");
    ran.expect_parts("keepalive_reused", "true conn ", &[]);
    ran.expect(
        "echo",
        "PUT /echo?q=1 abc [Accept: text/plain|Content-Length: 3|X-Many: one|X-Many: two]",
    );
    ran.expect("redirect_not_followed", "302 /final");
    ran.expect("redirect_followed", "200 final GET");
    ran.expect("redirect_bounded", "307");
    ran.expect("see_other", "200 final GET");
    ran.expect("die_mid_body", "nil closed in the middle of the body");
    ran.expect("die_before", "nil closed before the response");
    ran.expect_parts("garbage", "nil invalid response", &[]);
    ran.expect("bad_chunk", "nil invalid response: invalid chunk size");
    ran.expect("too_big", "nil response body larger than max_body");
    ran.expect("slow", "nil timeout");
    ran.expect("refused", "nil refused");
    ran.expect("https", "nil https: refused");
    ran.expect("bad_url", "nil unsupported scheme 'ftp' in 'ftp://x/'");
    ran.expect_parts("no_host", "nil 'nonsense' is not an absolute URL", &[]);
    ran.expect_parts("name", "nil no.such.host.invalid", &[]);
    ran.expect_parts(
        "bad_header",
        "false ",
        &["lunet.http.request: invalid header value"],
    );
    ran.expect_parts(
        "framing_header",
        "false ",
        &["lunet.http.request: Content-Length and Transfer-Encoding are set by lunet"],
    );
    ran.expect_parts(
        "not_a_table",
        "false ",
        &["lunet.http.request: expected a table"],
    );
    ran.expect("after", "200");
    ran.expect("retried", "true true");
    ran.expect("not_retried", "nil closed before the response");
}
