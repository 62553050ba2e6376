//! The codecs against real peers on loopback: curl as an HTTP client of a
//! server written with `http`, redis-server answering a client written with
//! `resp`, and redis-cli talking to a server that parses with `resp`.
//! Python's `websocket-client` (PyPI) against `websocket`, and Debian's
//! `nats-server` against `nats` (scripts/test.sh installs both).
//! Every socket has a timeout and every child is killed when its test ends,
//! so a broken codec fails the test instead of hanging it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::http::{self, response, BodyDecoder, Framing, Version};
use super::nats::{self, ServerOp};
use super::resp::{self, Arg, Reply};
use super::websocket::{self, Message, MessageDecoder, Opcode, Role};
use super::Progress;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A child process killed and reaped when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    fn spawn(command: &mut Command) -> Peer {
        let program = format!("{:?}", command.get_program());
        Peer(
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("{program} is needed by this test: {e}")),
        )
    }

    /// Closes stdin, waits for the exit; stdout. Fails on a failed exit.
    fn finish(mut self) -> Vec<u8> {
        drop(self.0.stdin.take());
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_end(&mut stdout);
        }
        if let Some(mut err) = self.0.stderr.take() {
            let _ = err.read_to_end(&mut stderr);
        }
        let status = self.0.wait().expect("wait for the peer");
        assert!(
            status.success(),
            "peer failed: {status}: {}",
            String::from_utf8_lossy(&stderr)
        );
        stdout
    }
}

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads more bytes into `buffer`; panics at EOF (the peer gave up).
fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).expect("read from the peer");
    assert!(
        n > 0,
        "the peer closed; have {:?}",
        String::from_utf8_lossy(buffer)
    );
    buffer.extend_from_slice(&chunk[..n]);
}

/// What one HTTP request carried.
struct Received {
    method: String,
    path: Vec<u8>,
    query: Vec<(Vec<u8>, Vec<u8>)>,
    headers: Vec<(String, Vec<u8>)>,
    framing: Framing,
    expect_continue: bool,
    body: Vec<u8>,
}

/// Serves one request with the `http` codec: answers 100 Continue when
/// asked, reads the body, and answers with `reply` as a chunked body in
/// pieces of 1000 bytes.
fn serve_one(stream: &mut TcpStream, reply: &[u8]) -> Received {
    let limits = http::Limits::default();
    let mut buffer = Vec::new();
    let (mut received, head_len) = loop {
        match http::parse_request(&buffer, &limits).expect("curl's request parses") {
            Progress::Done(request, used) => {
                let path = http::url::decode_path(request.path).unwrap().into_owned();
                let query = http::url::parse_query(request.query.unwrap_or(""))
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let headers = request
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect();
                let received = Received {
                    method: request.method.to_owned(),
                    path,
                    query,
                    headers,
                    framing: request.framing,
                    expect_continue: request.expect_continue,
                    body: Vec::new(),
                };
                break (received, used);
            }
            Progress::NeedMore { .. } => read_more(stream, &mut buffer),
        }
    };
    buffer.drain(..head_len);
    if received.expect_continue {
        stream.write_all(response::CONTINUE).unwrap();
    }
    let mut decoder = BodyDecoder::new(received.framing, &limits);
    loop {
        let step = decoder.decode(&buffer).expect("curl's body decodes");
        received.body.extend_from_slice(step.data);
        let (consumed, done) = (step.consumed, step.done);
        buffer.drain(..consumed);
        if done {
            break;
        }
        if consumed == 0 {
            read_more(stream, &mut buffer);
        }
    }
    let mut out = Vec::new();
    response::write_status_line(&mut out, Version::Http11, 200).unwrap();
    response::write_header(&mut out, b"Content-Type", b"application/octet-stream").unwrap();
    response::write_header(&mut out, b"Transfer-Encoding", b"chunked").unwrap();
    response::write_date(&mut out, std::time::SystemTime::now());
    response::end_head(&mut out);
    for piece in reply.chunks(1000) {
        response::write_chunk(&mut out, piece);
    }
    response::write_last_chunk(&mut out);
    stream.write_all(&out).unwrap();
    received
}

fn curl(port: u16, args: &[&str]) -> Peer {
    let url = format!("http://127.0.0.1:{port}/a%20b/c?x=1&y=two+words&x=3&flag");
    Peer::spawn(
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10"])
            .args(args)
            .arg(url),
    )
}

#[test]
fn curl_get() {
    let (listener, port) = listener();
    let peer = curl(port, &["-H", "X-Custom: a value\twith tab"]);
    let mut stream = accept(&listener);
    let reply: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let received = serve_one(&mut stream, &reply);
    drop(stream);
    assert_eq!(peer.finish(), reply);
    assert_eq!(received.method, "GET");
    assert_eq!(received.path, b"/a b/c");
    let query: Vec<(&[u8], &[u8])> = received
        .query
        .iter()
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    assert_eq!(
        query,
        vec![
            (&b"x"[..], &b"1"[..]),
            (b"y", b"two words"),
            (b"x", b"3"),
            (b"flag", b"")
        ]
    );
    assert!(received
        .headers
        .iter()
        .any(|(k, v)| k == "x-custom" && v == b"a value\twith tab"));
    assert_eq!(received.framing, Framing::None);
}

#[test]
fn curl_post_with_expect_continue() {
    let (listener, port) = listener();
    let body = "b".repeat(70_000);
    let peer = curl(
        port,
        &["-H", "Expect: 100-continue", "--data-binary", &body],
    );
    let mut stream = accept(&listener);
    let received = serve_one(&mut stream, b"ok");
    drop(stream);
    assert_eq!(peer.finish(), b"ok");
    assert_eq!(received.method, "POST");
    assert!(received.expect_continue);
    assert_eq!(received.framing, Framing::Length(70_000));
    assert_eq!(received.body, body.as_bytes());
}

#[test]
fn curl_chunked_upload() {
    let (listener, port) = listener();
    let mut peer = curl(
        port,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            "@-",
            "-X",
            "PUT",
        ],
    );
    let upload: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut stdin = peer.0.stdin.take().unwrap();
    let writer = {
        let upload = upload.clone();
        std::thread::spawn(move || {
            stdin.write_all(&upload).unwrap();
        })
    };
    let mut stream = accept(&listener);
    let received = serve_one(&mut stream, b"stored");
    drop(stream);
    writer.join().unwrap();
    assert_eq!(peer.finish(), b"stored");
    assert_eq!(received.method, "PUT");
    assert_eq!(received.framing, Framing::Chunked);
    assert_eq!(received.body, upload);
}

/// A server started by `command(port)` on a free port, stopped when
/// dropped, and a connection to it on which `ready` succeeded. The port is
/// probed below the ephemeral range (32768 and up on Linux), so that a
/// listener another test binds to port 0 can never be the one this
/// connects to.
fn server_on_free_port(
    command: impl Fn(u16) -> Command,
    ready: impl Fn(&mut TcpStream) -> bool,
) -> (Peer, TcpStream) {
    let mut port = 20_000 + (std::process::id() % 10_000) as u16;
    for _ in 0..20 {
        port += 1;
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut peer = Peer::spawn(&mut command(port));
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            if peer.0.try_wait().expect("try_wait").is_some() {
                break; // the port was taken after the probe: try another
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                if ready(&mut stream) {
                    return (peer, stream);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("the server did not start");
}

fn redis_server() -> (Peer, TcpStream) {
    server_on_free_port(
        |port| {
            let mut command = Command::new("redis-server");
            command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]);
            command.args(["--save", "", "--appendonly", "no"]);
            command
        },
        |stream| {
            let mut pong = [0u8; 7];
            stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut pong).is_ok()
                && &pong == b"+PONG\r\n"
        },
    )
}

#[test]
fn redis_server_replies_parse() {
    let (_server, mut stream) = redis_server();
    let commands: Vec<Vec<&[u8]>> = vec![
        vec![b"PING"],
        vec![b"SET", b"k", b"line\r\nbreak"],
        vec![b"GET", b"k"],
        vec![b"GET", b"missing"],
        vec![b"INCR", b"n"],
        vec![b"INCR", b"k"],
        vec![b"RPUSH", b"list", b"a", b"", b"c"],
        vec![b"LRANGE", b"list", b"0", b"-1"],
        vec![b"EVAL", b"return {1, {2, 'x'}, {}}", b"0"],
        vec![b"BLPOP", b"empty", b"0.01"],
    ];
    let mut out = Vec::new();
    for command in &commands {
        resp::write_command(&mut out, command);
    }
    // One pipelined write: the replies arrive in arbitrary pieces.
    stream.write_all(&out).unwrap();
    let limits = resp::Limits::default();
    let mut buffer = Vec::new();
    let mut replies = Vec::new();
    while replies.len() < commands.len() {
        match resp::parse_reply(&buffer, &limits).expect("redis's reply parses") {
            Progress::Done(reply, used) => {
                replies.push(format!("{reply:?}"));
                buffer.drain(..used);
            }
            Progress::NeedMore { .. } => read_more(&mut stream, &mut buffer),
        }
    }
    let expected = [
        Reply::Simple(b"PONG"),
        Reply::Simple(b"OK"),
        Reply::Bulk(Some(b"line\r\nbreak")),
        Reply::Bulk(None),
        Reply::Integer(1),
        Reply::Error(b"ERR value is not an integer or out of range"),
        Reply::Integer(3),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"a")),
            Reply::Bulk(Some(b"")),
            Reply::Bulk(Some(b"c")),
        ])),
        Reply::Array(Some(vec![
            Reply::Integer(1),
            Reply::Array(Some(vec![Reply::Integer(2), Reply::Bulk(Some(b"x"))])),
            Reply::Array(Some(vec![])),
        ])),
        Reply::Array(None),
    ];
    let expected: Vec<String> = expected.iter().map(|reply| format!("{reply:?}")).collect();
    assert_eq!(replies, expected);
}

/// redis-cli as the client of a server that parses with
/// `resp::parse_command` and answers with the `resp` writers.
#[test]
fn redis_cli_commands_parse() {
    let (listener, port) = listener();
    let peer = Peer::spawn(Command::new("redis-cli").args(["-p", &port.to_string()]));
    let mut input = peer.0.stdin.as_ref().unwrap();
    input
        .write_all(b"SET greeting \"hello world\"\nECHO \"tab\\there\"\nDEL a b c\nQUIT\n")
        .unwrap();
    let mut stream = accept(&listener);
    let limits = resp::Limits::default();
    let mut buffer = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut seen = Vec::new();
    loop {
        let used = match resp::parse_command(&buffer, &limits, &mut args)
            .expect("redis-cli's command parses")
        {
            Progress::Done((), used) => used,
            Progress::NeedMore { .. } => {
                // redis-cli handles QUIT itself: it just closes.
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).expect("read from redis-cli");
                if n == 0 {
                    break;
                }
                buffer.extend_from_slice(&chunk[..n]);
                continue;
            }
        };
        let words: Vec<Vec<u8>> = args.iter().map(|a| a.bytes(&buffer).to_vec()).collect();
        buffer.drain(..used);
        let mut out = Vec::new();
        let name = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        match &name[..] {
            b"SET" => resp::write_simple(&mut out, b"OK"),
            b"ECHO" => resp::write_bulk(&mut out, &words[1]),
            b"DEL" => resp::write_integer(&mut out, words.len() as i64 - 1),
            // redis-cli asks for COMMAND DOCS at start (for hints).
            _ => resp::write_array_header(&mut out, 0),
        }
        stream.write_all(&out).unwrap();
        if &name[..] != b"COMMAND" {
            seen.push(words);
        }
    }
    drop(stream);
    let stdout = peer.finish();
    assert_eq!(
        seen,
        vec![
            vec![
                b"SET".to_vec(),
                b"greeting".to_vec(),
                b"hello world".to_vec()
            ],
            vec![b"ECHO".to_vec(), b"tab\there".to_vec()],
            vec![b"DEL".to_vec(), b"a".to_vec(), b"b".to_vec(), b"c".to_vec()],
        ]
    );
    assert_eq!(String::from_utf8_lossy(&stdout), "OK\ntab\there\n3\n");
}

/// Python's websocket-client as the client of an echo server written with
/// `websocket`: a masked text, a 76,800-byte binary (64-bit length), a
/// fragmented text with a ping between its fragments, and a close.
#[test]
fn python_websocket_client() {
    let (listener, port) = listener();
    let script = format!(
        r#"
import websocket
ws = websocket.create_connection("ws://127.0.0.1:{port}/chat", timeout=10)
ws.send("héllo")
ws.send_binary(bytes(range(256)) * 300)
ws.send_frame(websocket.ABNF.create_frame("ab", websocket.ABNF.OPCODE_TEXT, 0))
ws.ping("p1")
ws.send_frame(websocket.ABNF.create_frame("cd", websocket.ABNF.OPCODE_CONT, 1))
for i in range(4):
    opcode, data = ws.recv_data(control_frame=True)
    print(opcode, len(data))
ws.close(status=1000, reason=b"bye")
"#
    );
    let peer = Peer::spawn(Command::new("python3").arg("-c").arg(script));
    let mut stream = accept(&listener);
    let mut buffer = Vec::new();
    let head_len = loop {
        match http::parse_request(&buffer, &http::Limits::default()).expect("the upgrade parses") {
            Progress::Done(request, used) => {
                let key = websocket::check_upgrade(&request).expect("a valid upgrade");
                let mut out = Vec::new();
                websocket::write_accept(&mut out, key, None);
                stream.write_all(&out).unwrap();
                break used;
            }
            Progress::NeedMore { .. } => read_more(&mut stream, &mut buffer),
        }
    };
    buffer.drain(..head_len);
    let mut decoder = MessageDecoder::new(Role::Server, websocket::Limits::default());
    let mut received = Vec::new();
    loop {
        let (message, used) = match decoder.decode(&buffer).expect("the client's frames decode") {
            Progress::Done(message, used) => (message, used),
            Progress::NeedMore { .. } => {
                read_more(&mut stream, &mut buffer);
                continue;
            }
        };
        buffer.drain(..used);
        let Some(message) = message else { continue };
        let mut out = Vec::new();
        match &message {
            Message::Text(text) => {
                websocket::write_frame(&mut out, true, Opcode::Text, text.as_bytes(), None)
            }
            Message::Binary(data) => {
                websocket::write_frame(&mut out, true, Opcode::Binary, data, None)
            }
            Message::Ping(data) => websocket::write_frame(&mut out, true, Opcode::Pong, data, None),
            Message::Pong(_) => {}
            Message::Close(_) => websocket::write_close(&mut out, 1000, "", None),
        }
        stream.write_all(&out).unwrap();
        let closed = matches!(message, Message::Close(_));
        received.push(message);
        if closed {
            break;
        }
    }
    let binary: Vec<u8> = (0..300).flat_map(|_| 0..=255u8).collect();
    assert_eq!(
        received,
        vec![
            Message::Text("héllo".into()),
            Message::Binary(binary),
            Message::Ping(b"p1".to_vec()),
            Message::Text("abcd".into()),
            Message::Close(Some((1000, "bye".into()))),
        ]
    );
    // Opcodes of what the client got back: text, binary, pong, text.
    assert_eq!(
        String::from_utf8_lossy(&peer.finish()),
        "1 6\n2 76800\n10 2\n1 4\n"
    );
}

/// nats-server 2.9 answering a client written with `nats`: INFO,
/// CONNECT with headers and no_responders, SUB (plain and queue), PUB
/// with a reply, HPUB, a request nobody serves (the 503 status), PING.
#[test]
fn nats_server_operations() {
    let (_server, mut stream) = server_on_free_port(
        |port| {
            let mut command = Command::new("nats-server");
            command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
            command
        },
        |stream| {
            let mut info = [0u8; 5];
            stream.read_exact(&mut info).is_ok() && &info == b"INFO "
        },
    );
    let mut limits = nats::Limits::default();
    let mut buffer = b"INFO ".to_vec();
    let mut out = Vec::new();
    nats::write_connect(
        &mut out,
        br#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}"#,
    )
    .unwrap();
    nats::write_sub(&mut out, b"work", None, 1).unwrap();
    nats::write_sub(&mut out, b"work", Some(b"workers"), 2).unwrap();
    nats::write_sub(&mut out, b"_INBOX.me", None, 3).unwrap();
    nats::write_pub(&mut out, b"work", Some(b"_INBOX.me"), b"hello").unwrap();
    nats::write_hpub(
        &mut out,
        b"work",
        None,
        &[(b"Trace", b"a b")],
        b"with headers",
    )
    .unwrap();
    nats::write_pub(&mut out, b"nobody.serves", Some(b"_INBOX.me"), b"").unwrap();
    nats::write_unsub(&mut out, 1, None);
    nats::write_pub(&mut out, b"work", None, b"queue only").unwrap();
    nats::write_ping(&mut out);
    stream.write_all(&out).unwrap();
    let mut seen = Vec::new();
    loop {
        let (text, used) =
            match nats::parse_server_op(&buffer, &limits).expect("the server's operation parses") {
                Progress::Done(op, used) => {
                    let text = match &op {
                        ServerOp::Info(json) => {
                            limits.max_payload =
                                nats::info_max_payload(json).expect("max_payload in INFO") as usize;
                            "INFO".to_string()
                        }
                        ServerOp::Msg(msg) => format!(
                            "{} {} {:?} {} {:?}",
                            String::from_utf8_lossy(msg.subject),
                            msg.sid,
                            msg.reply.map(String::from_utf8_lossy),
                            String::from_utf8_lossy(msg.payload),
                            msg.headers.as_ref().map(|h| (h.status, h.fields.len())),
                        ),
                        other => format!("{other:?}"),
                    };
                    (text, used)
                }
                Progress::NeedMore { .. } => {
                    read_more(&mut stream, &mut buffer);
                    continue;
                }
            };
        buffer.drain(..used);
        // The server may PING first (RTT); answer it.
        if text == "Ping" {
            let mut pong = Vec::new();
            nats::write_pong(&mut pong);
            stream.write_all(&pong).unwrap();
            continue;
        }
        let done = text == "Pong";
        seen.push(text);
        if done {
            break;
        }
    }
    assert_eq!(seen[0], "INFO");
    let mut messages = seen[1..seen.len() - 1].to_vec();
    messages.sort();
    assert_eq!(
        messages,
        vec![
            "_INBOX.me 3 None  Some((Some(503), 0))",
            "work 1 None with headers Some((None, 1))",
            "work 1 Some(\"_INBOX.me\") hello None",
            "work 2 None queue only None",
            "work 2 None with headers Some((None, 1))",
            "work 2 Some(\"_INBOX.me\") hello None",
        ]
    );
}
