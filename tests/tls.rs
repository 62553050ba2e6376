//! TLS with real peers: `curl --cacert` and `openssl s_client` against a
//! lunet TLS server (`tests/scripts/tls_server.lua`), a lunet client
//! (`tests/scripts/steps.lua`) against `openssl s_server` and against
//! lunet; handshake garbage, a stalled handshake, a wrong server name, an
//! expired or self-signed certificate refused with verify on. Certificates
//! are made by each test with the openssl CLI (Debian's `openssl`).

mod common;
mod tls_support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use common::{End, Server, Steps, TempDir, DEADLINE};
use tls_support::{text, Certs, SServer};

/// `openssl s_server`'s mode for line tests: each line back reversed.
const REV: &[&str] = &["-rev"];

/// `tls_server.lua` serving the leaf certificate of `certs`.
fn tls_server(certs: &Certs, extra: &[&str]) -> Server {
    certs.serve("tls_server.lua", "leaf.pem", extra, 1)
}

/// `openssl s_client -quiet` to `port`, trusting `ca`, with `input`.
#[track_caller]
fn s_client(port: u16, ca: &str, extra: &[&str], input: &[u8]) -> Output {
    common::run_with_input(
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-CAfile", ca, "-quiet"])
            .args(extra),
        input,
    )
}

#[test]
fn curl_gets_https_answers_with_the_ca() {
    let certs = Certs::make();
    let server = tls_server(&certs, &[]);
    let port = server.port();
    // Two requests on one kept-alive connection, by name and by address.
    let output = common::run_with_input(
        Command::new("curl").args([
            "-sS",
            "--cacert",
            &certs.file("ca.pem"),
            &format!("https://localhost:{port}/one"),
            &format!("https://localhost:{port}/two"),
        ]),
        b"",
    );
    assert_eq!(
        text(&output.stdout),
        "hello over tls\nhello over tls\n",
        "curl: {}",
        text(&output.stderr)
    );
    let output = common::run_with_input(
        Command::new("curl").args([
            "-sS",
            "--cacert",
            &certs.file("ca.pem"),
            &format!("https://127.0.0.1:{port}/"),
        ]),
        b"",
    );
    assert_eq!(
        text(&output.stdout),
        "hello over tls\n",
        "{}",
        text(&output.stderr)
    );
    // Without the CA curl refuses, and the server logs the peer's alert.
    let output = common::run_with_input(
        Command::new("curl").args(["-sS", &format!("https://localhost:{port}/")]),
        b"",
    );
    assert!(!output.status.success());
    server.wait_log("tls: received fatal alert");
}

#[test]
fn openssl_s_client_talks_lines_over_tls_1_3_and_1_2() {
    let certs = Certs::make();
    let server = tls_server(&certs, &[]);
    for version in ["-tls1_3", "-tls1_2"] {
        let output = s_client(
            server.port(),
            &certs.file("ca.pem"),
            &["-verify_return_error", version],
            b"hello\nworld\nquit\n",
        );
        assert_eq!(
            text(&output.stdout),
            "hello\nworld\nbye\n",
            "{version}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn handshake_garbage_costs_only_that_connection() {
    let certs = Certs::make();
    let server = tls_server(&certs, &[]);
    let mut garbage = server.client();
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    // rustls answers with an alert, then the server closes.
    let mut answer = Vec::new();
    let _ = garbage.reader().read_to_end(&mut answer);
    assert!(
        answer.first() == Some(&0x15) || answer.is_empty(),
        "an alert record or nothing, got {answer:?}"
    );
    server.wait_log("tls: received corrupt message");
    // Random bytes that look like a record header, then a reset.
    let mut random = server.client();
    random.send([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    let _ = random.reader().read_to_end(&mut Vec::new());
    // Others are served meanwhile.
    let output = s_client(
        server.port(),
        &certs.file("ca.pem"),
        &[],
        b"still here\nquit\n",
    );
    assert_eq!(text(&output.stdout), "still here\nbye\n");
}

#[test]
fn a_stalled_handshake_times_out_and_costs_only_that_connection() {
    let certs = Certs::make();
    let server = tls_server(&certs, &["handshake_timeout=300"]);
    let mut stalled = server.client();
    // A record header announcing 512 bytes of ClientHello, and no more.
    stalled.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    let started = Instant::now();
    // A good client is served while the other one stalls.
    let output = s_client(
        server.port(),
        &certs.file("ca.pem"),
        &[],
        b"meanwhile\nquit\n",
    );
    assert_eq!(text(&output.stdout), "meanwhile\nbye\n");
    // The stalled one is closed by the server, and the handler was told.
    let end = stalled.end();
    assert!(matches!(end, End::Closed | End::Reset), "{end:?}");
    assert!(started.elapsed() < DEADLINE);
    server.wait_log("tls: handshake timed out");
}

#[test]
fn a_lunet_client_talks_to_openssl_s_server() {
    let certs = Certs::make();
    let good = SServer::start(&certs, "leaf.pem", REV);
    let (_server, mut client) = Steps::start(&[
        &format!("addr=127.0.0.1:{}", good.port),
        &format!("named=localhost:{}", good.port),
        &format!("ca={}", certs.file("ca.pem")),
    ]);
    assert_eq!(
        client.run(
            "s = assert(lunet.connect(getenv('addr'), {tls = {ca = getenv('ca')}})) \
             s:write('hello\\n') return (s:readline())"
        ),
        "true 'olleh'"
    );
    assert_eq!(client.run("(s:handshake())"), "true true");
    assert_eq!(
        client.run("s:write('abc\\n') return (s:readline())"),
        "true 'cba'"
    );
    assert_eq!(client.run("(s:close())"), "true true");
    // By name, and with the CA given as PEM text.
    assert_eq!(
        client.run(
            "local pem = io.open(getenv('ca')):read('a') \
             s = assert(lunet.connect(getenv('named'), {tls = {ca = pem}, timeout = 5000})) \
             s:write('named\\n') local line = s:readline() s:close() return line"
        ),
        "true 'deman'"
    );
}

#[test]
fn a_lunet_client_refuses_bad_certificates_with_verify_on() {
    let certs = Certs::make();
    let expired = SServer::start(&certs, "expired.pem", REV);
    let self_signed = SServer::start(&certs, "self-signed.pem", REV);
    let good = SServer::start(&certs, "leaf.pem", REV);
    let (_server, mut client) = Steps::start(&[
        &format!("expired=127.0.0.1:{}", expired.port),
        &format!("self_signed=127.0.0.1:{}", self_signed.port),
        &format!("good=127.0.0.1:{}", good.port),
        &format!("ca={}", certs.file("ca.pem")),
        &format!("other_ca={}", certs.file("other-ca.pem")),
    ]);
    let refused = |client: &mut Steps, lua: &str, words: &[&str]| {
        let answer = client.run(lua);
        assert!(
            answer.starts_with("true nil 'tls: ") && words.iter().all(|w| answer.contains(w)),
            "{lua}\n  expected nil, 'tls: ...' with {words:?}\n  got: {answer}"
        );
    };
    refused(
        &mut client,
        "lunet.connect(getenv('expired'), {tls = {ca = getenv('ca')}})",
        &["Expired"],
    );
    refused(
        &mut client,
        "lunet.connect(getenv('self_signed'), {tls = {ca = getenv('ca')}})",
        &["UnknownIssuer"],
    );
    // The system's roots do not know the test CA.
    refused(
        &mut client,
        "lunet.connect(getenv('good'), {tls = {}})",
        &["UnknownIssuer"],
    );
    refused(
        &mut client,
        "lunet.connect(getenv('good'), {tls = true})",
        &["UnknownIssuer"],
    );
    refused(
        &mut client,
        "lunet.connect(getenv('good'), {tls = {ca = getenv('other_ca')}})",
        &["UnknownIssuer"],
    );
    refused(
        &mut client,
        "lunet.connect(getenv('good'), {tls = {ca = getenv('ca'), server_name = 'other.example'}})",
        &["not valid for name \"other.example\""],
    );
    // verify = false takes any certificate (an expired one here).
    assert_eq!(
        client.run(
            "local s = assert(lunet.connect(getenv('expired'), {tls = {verify = false}})) \
             s:write('anyway\\n') return (s:readline())"
        ),
        "true 'yawyna'"
    );
    // Options that make no sense raise; a CA file that is not there fails.
    let answer = client.run("lunet.connect(getenv('good'), {tls = {verify = 'yes'}})");
    assert!(answer.contains("tls.verify must be a boolean"), "{answer}");
    let answer = client.run("lunet.connect(getenv('good'), {tls = {ca = '/no/such/ca.pem'}})");
    assert!(
        answer.starts_with("true nil 'tls: cannot read the ca file /no/such/ca.pem"),
        "{answer}"
    );
    // A bad option raises after the TCP connection was made: that
    // connection is closed, not left open (the peer reads end of file).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let answer = client.run(&format!(
        "lunet.connect('127.0.0.1:{port}', {{tls = {{verify = 'yes'}}}})"
    ));
    assert!(answer.contains("tls.verify must be a boolean"), "{answer}");
    let (mut peer, _) = listener.accept().expect("accept");
    peer.set_read_timeout(Some(common::DEADLINE))
        .expect("set_read_timeout");
    let mut byte = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut peer, &mut byte).expect("end of file, not a timeout"),
        0,
        "the connection was left open"
    );
}

#[test]
fn lunet_to_lunet_with_large_transfers_and_a_handshake_timeout_on_connect() {
    let certs = Certs::make();
    let tls_server = tls_server(&certs, &[]);
    // A plain TCP server that accepts and never answers: the handshake stalls.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (_server, mut client) = Steps::start(&[
        &format!("tls=127.0.0.1:{}", tls_server.port()),
        &format!("silent=127.0.0.1:{silent_port}"),
        &format!("ca={}", certs.file("ca.pem")),
    ]);
    // 1 MiB out in one write and back: output beyond what TLS buffers waits
    // in the connection's buffer and is sent as the peer reads.
    assert_eq!(
        client.run(
            "s = assert(lunet.connect(getenv('tls'), {tls = {ca = getenv('ca')}})) \
             local line = ('0123456789abcdef'):rep(4000) \
             for i = 1, 16 do assert(s:write(line, '\\n')) end \
             local back = 0 for i = 1, 16 do back = back + #assert(s:readline()) end return back"
        ),
        "true 1024000"
    );
    assert_eq!(
        client.run("s:write('quit\\n') return (s:readline())"),
        "true 'bye'"
    );
    assert_eq!(client.run("s:readline()"), "true nil 'closed' ''");
    let answer = client.run(
        "lunet.connect(getenv('silent'), {tls = {ca = getenv('ca'), handshake_timeout = 200}})",
    );
    assert_eq!(answer, "true nil 'tls: handshake timed out'");
    // The socket timeout bounds the handshake too.
    let answer =
        client.run("lunet.connect(getenv('silent'), {timeout = 200, tls = {ca = getenv('ca')}})");
    assert_eq!(answer, "true nil 'timeout'");
    drop(silent);
    // A pooled TLS connection goes only to a caller with the same TLS
    // settings: one verified with `ca` is not handed to a caller that
    // trusts the system's roots alone.
    assert_eq!(
        client.run(
            "local s = assert(lunet.connect(getenv('tls'), {tls = {ca = getenv('ca')}})) \
             s:write('pooled\\n') s:readline() return s:setkeepalive()"
        ),
        "true true"
    );
    let answer = client.run("lunet.connect(getenv('tls'), {tls = {}})");
    assert!(
        answer.starts_with("true nil 'tls: invalid peer certificate: UnknownIssuer"),
        "{answer}"
    );
    assert_eq!(
        client.run(
            "local s = assert(lunet.connect(getenv('tls'), {tls = {ca = getenv('ca')}})) \
             s:write('again\\n') return (s:readline())"
        ),
        "true 'again'"
    );
}

#[test]
fn bad_certificate_files_are_a_load_error() {
    let certs = Certs::make();
    let dir = TempDir::new("tls-bad");
    let not_pem = dir.file("not.pem");
    std::fs::write(&not_pem, "this is not PEM").unwrap();
    for (cert, key, expected) in [
        (
            certs.file("leaf.pem"),
            "/no/such.key".to_string(),
            "cannot read the key file /no/such.key",
        ),
        (not_pem.clone(), certs.file("leaf.key"), "no certificate in"),
        (certs.file("leaf.pem"), not_pem.clone(), "no private key in"),
        // A key that is not the certificate's.
        (certs.file("leaf.pem"), certs.file("ca.key"), "tls:"),
    ] {
        let (status, log) = common::run_to_exit(
            &common::test_script("tls_server.lua"),
            &[
                "listen=127.0.0.1:0",
                &format!("cert={cert}"),
                &format!("key={key}"),
            ],
        );
        assert!(!status.success(), "{cert} {key}: {log}");
        assert!(
            log.contains(expected),
            "{cert} {key}: expected {expected:?} in\n{log}"
        );
    }
    assert!(Path::new(&certs.file("leaf.pem")).exists());
}

#[test]
fn redis_commands_and_replies_over_tls() {
    let certs = Certs::make();
    let cert = format!("cert={}", certs.file("leaf.pem"));
    let key = format!("key={}", certs.file("leaf.key"));
    let resp = Server::start(&common::test_script("resp_echo.lua"), &[&cert, &key]);
    let (_server, mut client) = Steps::start(&[
        &format!("resp=127.0.0.1:{}", resp.port()),
        &format!("ca={}", certs.file("ca.pem")),
    ]);
    // readresp on the server side, readreply on the client side, through TLS.
    assert_eq!(
        client.run(
            "r = assert(lunet.redis.connect(getenv('resp'), {tls = {ca = getenv('ca')}})) \
             return r:call('ECHO', 'over tls')"
        ),
        "true {'ECHO' 'over tls'}"
    );
    assert_eq!(
        client.run(
            "for i = 1, 100 do r:send('INCR', i) end \
             local last for i = 1, 100 do last = r:read() end return last"
        ),
        "true {'INCR' '100'}"
    );
}

#[test]
fn a_tls_socket_handed_to_another_service_works_unchanged() {
    let certs = Certs::make();
    let cert = format!("cert={}", certs.file("leaf.pem"));
    let key = format!("key={}", certs.file("leaf.key"));
    let server = Server::start(&common::test_script("tls_gate.lua"), &[&cert, &key]);
    let output = s_client(
        server.port(),
        &certs.file("ca.pem"),
        &[],
        b"send tlsclient\nhello\nworld\nexit\n",
    );
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}\n{}", text(&output.stderr));
    for (line, word) in lines.iter().zip(["hello", "world"]) {
        assert!(
            line.starts_with("agent-") && line.ends_with(&format!(" tlsclient: {word}")),
            "{line}"
        );
    }
}

#[test]
fn kv_lua_serves_redis_cli_and_redis_benchmark_over_tls() {
    let certs = Certs::make();
    let cert = format!("tls_cert={}", certs.file("leaf.pem"));
    let key = format!("tls_key={}", certs.file("leaf.key"));
    let server = Server::start(&common::server_script("kv.lua"), &[&cert, &key]);
    let port = server.port().to_string();
    let ca = certs.file("ca.pem");
    let cli = |args: &[&str]| {
        let output = common::run_with_input(
            Command::new("redis-cli")
                .args(["--tls", "--cacert", &ca, "-h", "localhost", "-p", &port])
                .args(args),
            b"",
        );
        text(&output.stdout).trim_end().to_string()
    };
    assert_eq!(cli(&["SET", "over", "tls"]), "OK");
    assert_eq!(cli(&["GET", "over"]), "tls");
    // Pipelined load through TLS: every request answered, no error.
    let output = common::run_with_input(
        Command::new("redis-benchmark")
            .args(["--tls", "--cacert", &ca, "-h", "localhost", "-p", &port])
            .args([
                "-c", "20", "-n", "20000", "-P", "16", "-t", "set,get", "-q", "--csv",
            ]),
        b"",
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("\"SET\"") && stdout.contains("\"GET\""),
        "redis-benchmark: {stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        !text(&output.stderr).to_lowercase().contains("error"),
        "{}",
        text(&output.stderr)
    );
    // A plain client on the TLS port is refused; the server goes on.
    let plain = common::run_with_input(Command::new("redis-cli").args(["-p", &port, "PING"]), b"");
    assert_ne!(text(&plain.stdout).trim_end(), "PONG");
    assert_eq!(cli(&["GET", "over"]), "tls");
    // A key without its certificate is a load error.
    let (status, log) = common::run_to_exit(
        &common::server_script("kv.lua"),
        &["listen=127.0.0.1:0", &key],
    );
    assert!(
        !status.success() && log.contains("tls_cert and tls_key go together"),
        "{log}"
    );
}
