//! HTTPS and WSS end to end: `lunet.http.listen(addr, {tls = ...})`
//! (`tests/scripts/https_server.lua`) against curl, against a lunet https
//! client (`tests/scripts/steps.lua`), a lunet https client against `openssl
//! s_server -www`, keep-alive reuse of a pooled https connection counted on
//! the server side (its admin console's `accepted`), wss between Python's
//! websocket-client or `lunet.ws.connect` and `lunet.ws.upgrade`
//! (`tests/scripts/ws_server.lua` with TLS), and handshake garbage and a
//! stalled handshake on the https port; `server-scripts/http_hello.lua`
//! with `tls_cert=`/`tls_key=`. Certificates are made by each test
//! (`tests/tls_support`).

mod common;
mod http_support;
mod tls_support;

use std::io::Read;

use common::{Client, End, Server, Steps, TempDir};
use http_support::{curl, python};
use tls_support::{text, Certs, SServer};

/// `https_server.lua` with an admin console, whose `stat` counts the
/// connections the server accepted.
struct Https {
    server: Server,
    port: u16,
    console: Client,
}

impl Https {
    fn start(certs: &Certs, extra: &[&str]) -> Https {
        let mut args = vec!["--admin", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = certs.serve("https_server.lua", "leaf.pem", &args, 2);
        let line = server.wait_log("admin console listening on ");
        let admin = line
            .rsplit(':')
            .next()
            .and_then(|port| port.trim().parse::<u16>().ok())
            .unwrap_or_else(|| server.fail("no admin port in the log"));
        let port = server
            .ports()
            .iter()
            .copied()
            .find(|&port| port != admin)
            .unwrap_or_else(|| server.fail("no https port in the log"));
        let console = server.client_on(admin);
        Https {
            server,
            port,
            console,
        }
    }

    /// Connections accepted so far (the console's own among them).
    fn accepted(&mut self) -> u64 {
        self.console.send("stat\n");
        let mut accepted = None;
        loop {
            let line = self.console.line();
            if line == "<CMD OK>" {
                break;
            }
            if let Some(count) = line.strip_prefix("accepted ") {
                accepted = count.parse().ok();
            }
        }
        accepted.unwrap_or_else(|| self.server.fail("stat without an accepted line"))
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }
}

#[test]
fn curl_speaks_https_to_lunet_http() {
    let certs = Certs::make();
    let mut https = Https::start(&certs, &[]);
    let ca = certs.file("ca.pem");
    let hello = https.url("localhost", "/hello");

    // Two URLs in one curl: one connection, kept alive for the second.
    let before = https.accepted();
    let output = curl(&["--cacert", &ca, &hello, &hello]);
    assert_eq!(text(&output.stdout), "hello over httpshello over https");
    assert_eq!(https.accepted(), before + 1, "curl reused its connection");

    // POST with a body, by address.
    let output = curl(&[
        "--cacert",
        &ca,
        "--data-binary",
        "some body",
        "--dump-header",
        "-",
        &https.url("127.0.0.1", "/echo"),
    ]);
    let answer = text(&output.stdout);
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n")
            && answer.contains("\r\nX-Length: 9\r\n")
            && answer.ends_with("\r\n\r\nsome body"),
        "{answer}"
    );

    // `Expect: 100-continue` is answered: curl would otherwise wait longer
    // than its --max-time (http_support::curl) before it sends the body.
    let dir = TempDir::new("https-expect");
    let body = "0123456789".repeat(10_000);
    std::fs::write(dir.file("body"), &body).unwrap();
    let output = curl(&[
        "--verbose",
        "--cacert",
        &ca,
        "--header",
        "Expect: 100-continue",
        "--expect100-timeout",
        "3600",
        "--data-binary",
        &format!("@{}", dir.file("body")),
        &https.url("localhost", "/echo"),
    ]);
    assert!(
        text(&output.stderr).contains("< HTTP/1.1 100 Continue"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout) == body, "the body came back whole");

    // Without the CA curl refuses; the server logs the peer's alert.
    let output = common::run_with_input(
        std::process::Command::new("curl").args(["-sS", &hello]),
        b"",
    );
    assert!(!output.status.success());
    https
        .server
        .wait_log("ended: tls: received fatal alert: UnknownCA");
}

#[test]
fn a_lunet_https_client_against_lunet_http_reuses_its_connection() {
    let certs = Certs::make();
    let mut https = Https::start(&certs, &[]);
    let (_client_server, mut client) = Steps::start(&[
        &format!("url={}", https.url("localhost", "")),
        &format!("by_address={}", https.url("127.0.0.1", "")),
        &format!("ca={}", certs.file("ca.pem")),
    ]);
    client.expect(
        "function get(url, tls) \
         local res, err = lunet.http.request{url = url, tls = tls, timeout = 5000} \
         if not res then return nil, err end return res.status, res.body end",
        "true",
    );

    let before = https.accepted();
    for _ in 0..3 {
        client.expect(
            "get(getenv('url') .. '/hello', {ca = getenv('ca')})",
            "true 200 'hello over https'",
        );
    }
    client.expect(
        "local res = lunet.http.request{url = getenv('url') .. '/echo', method = 'POST', body = 'payload', tls = {ca = getenv('ca')}} \
         return res.status, res.body, res.headers['x-length']",
        "true 200 'payload' '7'",
    );
    assert_eq!(
        https.accepted(),
        before + 1,
        "four requests on one pooled connection"
    );

    // Other TLS settings or another host name: another pool key, another
    // connection, which is pooled in turn.
    client.expect(
        "get(getenv('url') .. '/hello', {verify = false})",
        "true 200 'hello over https'",
    );
    client.expect(
        "get(getenv('url') .. '/hello', {verify = false})",
        "true 200 'hello over https'",
    );
    client.expect(
        "get(getenv('by_address') .. '/hello', {ca = getenv('ca')})",
        "true 200 'hello over https'",
    );
    assert_eq!(https.accepted(), before + 3);

    // Refused: no CA (the system's roots do not know the test's), a name
    // the certificate is not for. The server logs the client's alerts.
    client.expect(
        "get(getenv('url') .. '/hello')",
        "true nil 'https: tls: invalid peer certificate: UnknownIssuer'",
    );
    https
        .server
        .wait_log("ended: tls: received fatal alert: UnknownCA");
    let answer = client
        .run("get(getenv('url') .. '/hello', {ca = getenv('ca'), server_name = 'other.example'})");
    assert!(
        answer.starts_with("true nil 'https: tls: invalid peer certificate: ")
            && answer.contains("not valid for name \"other.example\""),
        "{answer}"
    );
    // Bad options raise before anything is connected.
    let accepted = https.accepted();
    for (tls, expected) in [
        ("'yes'", "lunet.http.request: tls must be a table"),
        (
            "{ca = 1}",
            "lunet.http.request: tls.ca must be a string, got number",
        ),
        (
            "{verify = 'no'}",
            "lunet.http.request: tls.verify must be a boolean, got string",
        ),
    ] {
        let answer = client.run(&format!("get(getenv('url') .. '/hello', {tls})"));
        assert!(
            answer.starts_with("false ") && answer.contains(expected),
            "{tls}: {answer}"
        );
    }
    assert_eq!(https.accepted(), accepted);
    // The pooled connection still serves.
    client.expect(
        "get(getenv('url') .. '/hello', {ca = getenv('ca')})",
        "true 200 'hello over https'",
    );
    assert_eq!(https.accepted(), accepted);
}

#[test]
fn a_lunet_https_client_against_openssl_s_server_www() {
    let certs = Certs::make();
    let tls13 = SServer::start(&certs, "leaf.pem", &["-www"]);
    let tls12 = SServer::start(&certs, "leaf.pem", &["-www", "-tls1_2"]);
    let (_client_server, mut client) = Steps::start(&[
        &format!("tls13=https://localhost:{}/", tls13.port),
        &format!("tls12=https://localhost:{}/", tls12.port),
        &format!("ca={}", certs.file("ca.pem")),
    ]);
    // An HTTP/1.0 answer whose body runs until the server closes: the page
    // names the session's protocol and ends with the HTML.
    let page = |server: &str| {
        format!(
            "local res = assert(lunet.http.request{{url = getenv('{server}'), tls = {{ca = getenv('ca')}}, timeout = 5000}}) \
             return res.status, res.body:match('Protocol%s*: (%S+)'), res.body:sub(-18)"
        )
    };
    client.expect(
        &page("tls13"),
        "true 200 'TLSv1.3' '</BODY></HTML>\\x0D\\x0A\\x0D\\x0A'",
    );
    client.expect(
        &page("tls12"),
        "true 200 'TLSv1.2' '</BODY></HTML>\\x0D\\x0A\\x0D\\x0A'",
    );
}

#[test]
fn wss_with_python_websocket_client_and_lunet_ws_connect() {
    let certs = Certs::make();
    let server = certs.serve("ws_server.lua", "leaf.pem", &[], 1);
    let port = server.port();
    let ca = certs.file("ca.pem");
    let script = format!(
        r#"
import ssl, websocket
url = "wss://localhost:{port}/echo"
ws = websocket.create_connection(url, timeout=10, sslopt={{"ca_certs": "{ca}"}})
ws.send("héllo")
print("text", ws.recv())
ws.send_binary(b"\x00\x01\xff" * 30000)
data = ws.recv()
print("binary", len(data), data[:3] == b"\x00\x01\xff")
ws.ping("p1")
opcode, data = ws.recv_data(control_frame=True)
print("pong", opcode == websocket.ABNF.OPCODE_PONG, data.decode())
ws.close(status=4001, reason=b"client done")
try:
    websocket.create_connection(url, timeout=10)
    print("unverified accepted")
except ssl.SSLCertVerificationError:
    print("refused without the ca")
"#
    );
    let out = python(&script);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "text héllo",
            "binary 90000 True",
            "pong True p1",
            "refused without the ca",
        ],
        "{out}"
    );
    server.wait_log("ws close 4001 client done");

    let (_client_server, mut client) = Steps::start(&[
        &format!("wss=wss://localhost:{port}/echo"),
        &format!("ca={ca}"),
    ]);
    client.expect(
        "ws = assert(lunet.ws.connect(getenv('wss'), {tls = {ca = getenv('ca')}, timeout = 5000})) \
         ws:send('hi') return ws:recv()",
        "true 'hi' 'text'",
    );
    client.expect(
        "ws:send(('x'):rep(100000), 'binary') local data, kind = ws:recv() return #data, kind",
        "true 100000 'binary'",
    );
    client.expect("ws:close(1000, 'bye')", "true true");
    server.wait_log("ws close 1000 bye");
    client.expect(
        "lunet.ws.connect(getenv('wss'), {timeout = 5000})",
        "true nil 'wss: tls: invalid peer certificate: UnknownIssuer'",
    );
    let answer = client.run("lunet.ws.connect(getenv('wss'), {tls = {server_name = 7}})");
    assert!(
        answer.contains("lunet.ws.connect: tls.server_name must be a string, got number"),
        "{answer}"
    );
}

#[test]
fn garbage_and_a_stalled_handshake_cost_only_their_connection() {
    let certs = Certs::make();
    let https = Https::start(&certs, &["handshake_timeout=1000"]);
    let ca = certs.file("ca.pem");
    // Plain HTTP on the https port: rustls's alert (or nothing), a close.
    let mut garbage = https.server.client_on(https.port);
    garbage.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut answer = Vec::new();
    let _ = garbage.reader().read_to_end(&mut answer);
    assert!(
        answer.first() == Some(&0x15) || answer.is_empty(),
        "an alert record or nothing, got {answer:?}"
    );
    https
        .server
        .wait_log("ended: tls: received corrupt message");

    // A record header announcing 512 bytes of ClientHello, and no more.
    let mut stalled = https.server.client_on(https.port);
    stalled.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    // Others are served meanwhile.
    let output = curl(&["--cacert", &ca, &https.url("localhost", "/hello")]);
    assert_eq!(text(&output.stdout), "hello over https");
    // The stalled one is closed when its handshake's time is up.
    let end = stalled.end();
    assert!(matches!(end, End::Closed | End::Reset), "{end:?}");
    https.server.wait_log("ended: tls: handshake timed out");
    let output = curl(&["--cacert", &ca, &https.url("localhost", "/hello")]);
    assert_eq!(text(&output.stdout), "hello over https");
}

#[test]
fn http_hello_lua_serves_https_with_tls_cert_and_tls_key() {
    let certs = Certs::make();
    let cert = format!("tls_cert={}", certs.file("leaf.pem"));
    let key = format!("tls_key={}", certs.file("leaf.key"));
    let server = Server::start(&common::server_script("http_hello.lua"), &[&cert, &key]);
    let url = format!("https://localhost:{}/", server.port());
    let output = curl(&["--cacert", &certs.file("ca.pem"), &url, &url]);
    assert_eq!(text(&output.stdout), "hello worldhello world");
    // A certificate without its key is a load error.
    let (status, log) = common::run_to_exit(
        &common::server_script("http_hello.lua"),
        &["listen=127.0.0.1:0", &cert],
    );
    assert!(
        !status.success() && log.contains("tls_cert and tls_key go together"),
        "{log}"
    );
}
