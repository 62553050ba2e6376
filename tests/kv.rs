//! `server-scripts/kv.lua`, the Redis-protocol server, against the real
//! thing: every command through `redis-cli` compared with what
//! `redis-server` answers, raw protocol (pipelining, inline commands,
//! garbage), `redis-benchmark`, persistence across `kill -9`, and TTLs.
//!
//! `redis-cli`, `redis-benchmark` and `redis-server` come from Debian's
//! `redis-tools` and `redis-server` packages (`.ci/run` installs them). When
//! one is missing the tests fail and say how to install it: a comparison
//! with nothing is not a pass.

mod common;

use common::{try_connect, RedisServer as Redis, Server, TempDir, DEADLINE};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install redis-tools redis-server";

/// Panics unless `tool` runs: these tests need the real Redis tools.
#[track_caller]
fn require(tool: &str) {
    match Command::new(tool).arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "{tool} --version failed ({}); install the Redis tools: {INSTALL}",
            output.status
        ),
        Err(e) => panic!("{tool} is not available ({e}); install it: {INSTALL}"),
    }
}

fn kv(args: &[&str]) -> Server {
    require("redis-cli");
    Server::start(&common::server_script("kv.lua"), args)
}

/// Runs `command` to its end, killing it past `timeout`.
#[track_caller]
fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}; install: {INSTALL}"));
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "{command:?} did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// How a connection ended, or a reply.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    Reply(Reply),
    Closed,
}

/// A blocking RESP2 client; every read is bounded by [`DEADLINE`].
struct RespClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RespClient {
    fn new(stream: TcpStream) -> RespClient {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        stream.set_nodelay(true).unwrap();
        RespClient {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    #[track_caller]
    fn connect(port: u16) -> RespClient {
        let stream = try_connect(port).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        RespClient::new(stream)
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[track_caller]
    fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write to the server");
    }

    #[track_caller]
    fn command(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&args)
    }

    #[track_caller]
    fn command_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.send(&RespClient::encode(args));
        self.reply()
    }

    #[track_caller]
    fn reply(&mut self) -> Reply {
        match self.read() {
            Received::Reply(reply) => reply,
            Received::Closed => panic!("the connection closed where a reply was expected"),
        }
    }

    #[track_caller]
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {line:?}");
                line.truncate(line.len() - 2);
                Some(String::from_utf8_lossy(&line).into_owned())
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    #[track_caller]
    fn read(&mut self) -> Received {
        let Some(line) = self.line() else {
            return Received::Closed;
        };
        let (kind, rest) = line.split_at(1);
        let reply = match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(rest.parse().expect("integer reply")),
            "$" => {
                let size: i64 = rest.parse().expect("bulk size");
                if size < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0; size as usize + 2];
                    self.reader.read_exact(&mut data).expect("bulk data");
                    data.truncate(size as usize);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let count: i64 = rest.parse().expect("array size");
                if count < 0 {
                    Reply::Array(None)
                } else {
                    Reply::Array(Some((0..count).map(|_| self.reply()).collect()))
                }
            }
            _ => panic!("not a RESP reply: {line:?}"),
        };
        Received::Reply(reply)
    }

    /// Waits for the server to close the connection; panics on data.
    #[track_caller]
    fn closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "expected a close, got {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("waiting for the server to close: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Every command through redis-cli, compared with redis-server.

/// Splits a command line into words; "double quotes" group words.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(current);
    }
    words
}

fn redis_cli(port: u16, raw: bool, args: &[String]) -> String {
    let output = run_bounded(
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .arg(if raw { "--raw" } else { "--no-raw" })
            .args(args),
        DEADLINE,
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The commands compared. A line may start with a marker:
/// `sorted:` the reply is a set (KEYS): lines compared sorted;
/// `near:` an integer that may differ by the time between the two runs.
const SCRIPT: &str = r#"
ping
ping hello
ping a b
echo "hello world"
echo
get nokey
set k v
get k
set k v nx
set k2 v xx
set k3 v nx get
set k3 w nx get
set k3 w xx get
get k3
set k v get
set k v get get
set k v ex 0
set k v ex -1
set k v ex abc
set k v px 9223372036854775807
set k v ex 9223372036854775807
set k v ex 10 px 10
set k v ex 10 ex 100
near: ttl k
set k v keepttl
near: ttl k
set k v keepttl ex 5
set k v ex 5 keepttl
set k v nx xx
set k v xx nx
set k v foo
set k v ex
set k v exat 1
exists k
set k v pxat 99999999999999
near: ttl k
set k
set
del
del k k2 k3 k nokey
exists k k k2
set n 10
incr n
incrby n 5
decr n
decrby n 3
get n
incrby n abc
incrby n 1.5
incrby n " 1"
incr nn
get nn
set big 9223372036854775807
incr big
get big
set small -9223372036854775808
decr small
decrby n -9223372036854775808
incrby n -9223372036854775808
set s abc
incr s
set z 010
incr z
set m -0
incr m
set f 1.5
incr f
set sp " 5"
incr sp
set e ""
get e
incr e
incr
incrby n
decrby n
mget n nn nokey s
mget
mset a 1 b 2 c 3
mget a b c
mset a 1 b
mset a
setnx a 2
setnx fresh 2
get fresh
expire a 100
near: ttl a
near: pttl a
expire a 100 nx
expire a 50 xx
near: ttl a
expire a 200 gt
near: ttl a
expire a 10 lt
near: ttl a
expire a 500 lt
expire a 10 nx xx
expire a 10 gt lt
expire a 10 foo
expire a abc
expire a 9223372036854775807
expire a -9223372036854775808
expire a
expire nokey 10
pexpire b 100000
near: ttl b
pexpire b -1
exists b
get b
expire c 0
exists c
ttl nokey
pttl nokey
set p 1
ttl p
pttl p
expire p 100 gt
expire p 100 lt
near: ttl p
incr p
near: ttl p
persist p
persist p
persist nokey
ttl p
type p
type nokey
ttl
pttl a b
flushdb
dbsize
mset one 1 two 2 three 3 four 4 hello a hallo b hxllo c heeeello d hllo e h[llo f h-llo g h\llo h hé i
dbsize
sorted: keys *
sorted: keys h?llo
sorted: keys h*llo
sorted: keys h[ae]llo
sorted: keys h[^e]llo
sorted: keys h[a-b]llo
sorted: keys h[b-a]llo
sorted: keys h\[llo
sorted: keys h[
sorted: keys h[a
sorted: keys t*
sorted: keys *o
sorted: keys ***
sorted: keys *e*e*
sorted: keys h\*
sorted: keys [
sorted: keys [^
sorted: keys \
sorted: keys ?
sorted: keys ??
sorted: keys h?
sorted: keys nomatch
keys
keys a b
flushdb foo
flushdb async
flushdb sync x
dbsize
mset x 1 y 2
flushall
dbsize
select 0
select x
select
foo
foo bar baz
FOO "a b" c
GET k
SeT k v
gEt k
config get save
config get appendonly
config get nosuch
config
config foo
command foo
client foo
dbsize x
"#;

#[test]
fn every_command_answers_as_redis_does() {
    let redis = Redis::start();
    let server = kv(&[]);
    let mut differences = Vec::new();
    let mut compared = 0;
    for line in SCRIPT.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (mode, command) = match line.split_once(": ") {
            Some((mode @ ("sorted" | "near"), command)) => (mode, command),
            _ => ("exact", line),
        };
        let args = words(command);
        let raw = mode == "sorted";
        let expected = redis_cli(redis.port, raw, &args);
        let actual = redis_cli(server.port(), raw, &args);
        compared += 1;
        let same = match mode {
            "sorted" => {
                let mut a: Vec<&str> = expected.lines().collect();
                let mut b: Vec<&str> = actual.lines().collect();
                a.sort_unstable();
                b.sort_unstable();
                a == b
            }
            "near" => {
                let number = |s: &str| -> Option<i64> {
                    s.trim().trim_start_matches("(integer) ").parse().ok()
                };
                match (number(&expected), number(&actual)) {
                    // The runs are apart by a few redis-cli starts; a TTL
                    // in seconds or ms may have moved meanwhile.
                    (Some(a), Some(b)) => a == b || (a > 0 && b > 0 && (a - b).abs() <= 3000),
                    _ => expected == actual,
                }
            }
            _ => expected == actual,
        };
        if !same {
            differences.push(format!(
                "{command}\n  redis: {expected:?}\n  kv:    {actual:?}"
            ));
        }
    }
    assert!(compared > 150, "only {compared} commands compared");
    if !differences.is_empty() {
        server.fail(&format!(
            "{} of {compared} commands answered differently:\n{}",
            differences.len(),
            differences.join("\n")
        ));
    }
}

/// Answers that differ from Redis on purpose: one database, and a bound on
/// the argument count.
#[test]
fn documented_differences() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    assert_eq!(conn.command(&["SELECT", "0"]), Reply::Status("OK".into()));
    assert_eq!(
        conn.command(&["SELECT", "1"]),
        Reply::Error("ERR DB index is out of range".into())
    );
    // COMMAND has no command table (redis-cli only uses it for hints).
    assert_eq!(conn.command(&["COMMAND"]), Reply::Array(Some(vec![])));
    assert_eq!(
        conn.command(&["COMMAND", "DOCS"]),
        Reply::Array(Some(vec![]))
    );
    assert!(matches!(conn.command(&["COMMAND", "COUNT"]), Reply::Integer(n) if n > 20));
    assert!(
        matches!(conn.command(&["INFO"]), Reply::Bulk(Some(text)) if text.starts_with(b"# Server"))
    );
    assert_eq!(
        conn.command(&["CLIENT", "SETNAME", "x"]),
        Reply::Status("OK".into())
    );
    // Redis 7 accepts up to INT_MAX arguments; kv.lua stops at 1024 * 1024.
    conn.send(b"*1048577\r\n");
    assert_eq!(
        conn.reply(),
        Reply::Error("ERR Protocol error: invalid multibulk length".into())
    );
    conn.closed();
}

#[test]
fn redis_cli_reads_commands_from_stdin() {
    let server = kv(&[]);
    let mut child = Command::new("redis-cli")
        .args(["-p", &server.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"PING\nSET greeting \"hello world\"\nGET greeting\nINCR hits\nCOMMAND DOCS\nDBSIZE\n",
        )
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            server.fail("redis-cli did not finish");
        }
        thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout,
        "PONG\nOK\nhello world\n1\n\n2\n",
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// Raw protocol.

#[test]
fn pipelined_commands_in_one_write() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    let count = 2000;
    let mut batch = Vec::new();
    for i in 0..count {
        let key = format!("key:{i}");
        let value = format!("value-{i}");
        batch.extend(RespClient::encode(&[
            b"SET",
            key.as_bytes(),
            value.as_bytes(),
        ]));
        batch.extend(RespClient::encode(&[b"GET", key.as_bytes()]));
        batch.extend(RespClient::encode(&[b"INCR", b"counter"]));
        // Inline commands mixed in, as redis-cli --pipe users do.
        batch.extend(format!("EXISTS {key} nokey\r\n").as_bytes());
    }
    batch.extend(b"DBSIZE\r\n");
    conn.send(&batch);
    for i in 0..count {
        assert_eq!(conn.reply(), Reply::Status("OK".into()), "SET #{i}");
        assert_eq!(conn.reply(), bulk(&format!("value-{i}")), "GET #{i}");
        assert_eq!(conn.reply(), Reply::Integer(i + 1), "INCR #{i}");
        assert_eq!(conn.reply(), Reply::Integer(1), "EXISTS #{i}");
    }
    assert_eq!(conn.reply(), Reply::Integer(count + 1));
}

#[test]
fn commands_split_across_writes() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    let mut batch = RespClient::encode(&[b"SET", b"split", b"a value with\r\nline ends"]);
    batch.extend(RespClient::encode(&[b"GET", b"split"]));
    batch.extend(b"ECHO \"inline\\x21\"\r\n");
    // One byte per write: every header, bulk and line end arrives in
    // pieces.
    for byte in &batch {
        conn.send(std::slice::from_ref(byte));
    }
    assert_eq!(conn.reply(), Reply::Status("OK".into()));
    assert_eq!(conn.reply(), bulk("a value with\r\nline ends"));
    assert_eq!(conn.reply(), bulk("inline!"));
}

#[test]
fn large_values_round_trip() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    for size in [65_535usize, 65_536, 1 << 20, 5 << 20] {
        let value: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            conn.command_bytes(&[b"SET", b"big", &value]),
            Reply::Status("OK".into()),
            "SET of {size} bytes"
        );
        assert_eq!(
            conn.command_bytes(&[b"GET", b"big"]),
            Reply::Bulk(Some(value)),
            "GET of {size} bytes"
        );
    }
    // A pipeline behind a big value is still parsed from the right byte.
    let value = vec![b'x'; 200_000];
    let mut batch = RespClient::encode(&[b"SET", b"big", &value]);
    batch.extend(RespClient::encode(&[b"STRLEN-IS-NOT-HERE"]));
    batch.extend(b"PING\r\n");
    conn.send(&batch);
    assert_eq!(conn.reply(), Reply::Status("OK".into()));
    assert_eq!(
        conn.reply(),
        Reply::Error("ERR unknown command 'STRLEN-IS-NOT-HERE', with args beginning with: ".into())
    );
    assert_eq!(conn.reply(), Reply::Status("PONG".into()));
}

#[test]
fn a_value_larger_than_the_store_gets_oom() {
    let server = kv(&["capacity=1048576"]);
    let mut conn = RespClient::connect(server.port());
    let value = vec![b'v'; 200_000];
    assert_eq!(
        conn.command_bytes(&[b"SET", b"huge", &value]),
        Reply::Error("OOM command not allowed when used memory > 'maxmemory'.".into())
    );
    assert_eq!(conn.command(&["GET", "huge"]), Reply::Bulk(None));
    assert_eq!(
        conn.command(&["SET", "small", "ok"]),
        Reply::Status("OK".into())
    );
}

/// Garbage that Redis answers with a protocol error and a close.
const GARBAGE: &[(&str, &[u8], &str)] = &[
    ("bad count", b"*x\r\n", "invalid multibulk length"),
    ("count with a sign", b"*+1\r\n", "invalid multibulk length"),
    (
        "count with a leading zero",
        b"*01\r\n",
        "invalid multibulk length",
    ),
    ("negative bulk", b"*1\r\n$-1\r\n", "invalid bulk length"),
    (
        "bulk with a leading zero",
        b"*1\r\n$04\r\nPING\r\n",
        "invalid bulk length",
    ),
    (
        "bulk over 512 MiB",
        b"*1\r\n$600000000\r\n",
        "invalid bulk length",
    ),
    (
        "bulk size not a number",
        b"*1\r\n$4x\r\n",
        "invalid bulk length",
    ),
    ("no $", b"*1\r\nx4\r\n", "expected '$', got 'x'"),
    (
        "unbalanced quotes",
        b"SET \"a b\r\n",
        "unbalanced quotes in request",
    ),
    (
        "quote not ending a word",
        b"SET \"a\"b c\r\n",
        "unbalanced quotes in request",
    ),
];

#[test]
fn protocol_garbage_gets_the_redis_error_and_a_close() {
    let redis = Redis::start();
    let server = kv(&[]);
    let mut bystander = RespClient::connect(server.port());
    assert_eq!(
        bystander.command(&["SET", "alive", "yes"]),
        Reply::Status("OK".into())
    );

    for (what, input, error) in GARBAGE {
        let expected = Reply::Error(format!("ERR Protocol error: {error}"));
        for (name, port) in [("redis-server", redis.port), ("kv.lua", server.port())] {
            let mut conn = RespClient::connect(port);
            // A good command first: its reply comes before the error.
            let mut data = RespClient::encode(&[b"PING"]);
            data.extend_from_slice(input);
            conn.send(&data);
            assert_eq!(conn.reply(), Reply::Status("PONG".into()), "{name}: {what}");
            assert_eq!(conn.reply(), expected, "{name}: {what}");
            conn.closed();
        }
        assert_eq!(
            bystander.command(&["GET", "alive"]),
            bulk("yes"),
            "after {what}"
        );
    }
}

#[test]
fn header_lines_without_an_end_are_bounded() {
    let redis = Redis::start();
    let server = kv(&[]);
    let long = vec![b'1'; 70_000];
    for (what, prefix, error) in [
        ("count", &b"*"[..], "too big mbulk count string"),
        ("bulk size", &b"*1\r\n$"[..], "too big bulk count string"),
        ("inline", &b"PING "[..], "too big inline request"),
    ] {
        for (name, port) in [("redis-server", redis.port), ("kv.lua", server.port())] {
            let mut conn = RespClient::connect(port);
            let mut data = prefix.to_vec();
            data.extend_from_slice(&long);
            conn.send(&data);
            assert_eq!(
                conn.reply(),
                Reply::Error(format!("ERR Protocol error: {error}")),
                "{name}: {what}"
            );
            conn.closed();
        }
    }
}

#[test]
fn max_bulk_bounds_a_bulk_before_it_is_read() {
    let server = kv(&["max_bulk=1024"]);
    let mut bystander = RespClient::connect(server.port());
    let mut conn = RespClient::connect(server.port());
    let fits = vec![b'a'; 1024];
    assert_eq!(
        conn.command_bytes(&[b"SET", b"k", &fits]),
        Reply::Status("OK".into())
    );
    // Only the header: the error comes before any of the data is sent.
    conn.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n");
    assert_eq!(
        conn.reply(),
        Reply::Error("ERR Protocol error: invalid bulk length".into())
    );
    conn.closed();
    assert_eq!(
        bystander.command(&["STRLEN-LESS", "x"]),
        Reply::Error("ERR unknown command 'STRLEN-LESS', with args beginning with: 'x' ".into())
    );
    assert_eq!(bystander.command(&["GET", "k"]), Reply::Bulk(Some(fits)));
}

#[test]
fn quit_answers_then_closes() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    conn.send(b"PING\r\nQUIT\r\nPING\r\n");
    assert_eq!(conn.reply(), Reply::Status("PONG".into()));
    assert_eq!(conn.reply(), Reply::Status("OK".into()));
    conn.closed();
}

// ---------------------------------------------------------------------------
// redis-benchmark.

fn benchmark(port: u16, extra: &[&str]) -> String {
    require("redis-benchmark");
    let output = run_bounded(
        Command::new("redis-benchmark")
            .args(["-p", &port.to_string(), "-t", "set,get,incr,mset"])
            .args(["-n", "20000", "-q"])
            .args(extra),
        Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "redis-benchmark failed: {text}");
    text
}

#[test]
fn redis_benchmark_completes_without_errors() {
    let server = kv(&[]);
    for extra in [&[][..], &["-P", "16"][..]] {
        let text = benchmark(server.port(), extra);
        for test in ["SET", "GET", "INCR", "MSET (10 keys)"] {
            assert!(
                text.contains(&format!("{test}: ")) && text.contains("requests per second"),
                "no result for {test} in: {text}"
            );
        }
        // It warns when CONFIG GET fails and prints server errors.
        for bad in ["WARNING", "Error", "ERR"] {
            assert!(
                !text.contains(bad),
                "redis-benchmark {extra:?} said {bad}: {text}"
            );
        }
    }
    // Without -r every INCR goes to one key: 50 connections spread over the
    // hosts, and none of the 2 x 20000 increments was lost.
    let mut conn = RespClient::connect(server.port());
    assert_eq!(
        conn.command(&["GET", "counter:__rand_int__"]),
        bulk("40000")
    );
    // redis-benchmark 7 sends 3 random bytes as the value (-d 3).
    assert!(
        matches!(conn.command(&["GET", "key:__rand_int__"]), Reply::Bulk(Some(v)) if v.len() == 3)
    );
}

// ---------------------------------------------------------------------------
// TTLs.

/// Polls `probe` until it holds, at most [`DEADLINE`].
#[track_caller]
fn eventually(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !probe() {
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn integer(reply: Reply) -> i64 {
    match reply {
        Reply::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn keys_expire() {
    let server = kv(&[]);
    let mut conn = RespClient::connect(server.port());
    assert_eq!(
        conn.command(&["SET", "short", "v", "PX", "300"]),
        Reply::Status("OK".into())
    );
    let left = integer(conn.command(&["PTTL", "short"]));
    assert!((1..=300).contains(&left) || left == -2, "PTTL {left}");
    eventually("the key to expire", || {
        conn.command(&["GET", "short"]) == Reply::Bulk(None)
    });
    assert_eq!(conn.command(&["TTL", "short"]), Reply::Integer(-2));
    assert_eq!(conn.command(&["EXISTS", "short"]), Reply::Integer(0));
    assert_eq!(conn.command(&["DBSIZE"]), Reply::Integer(0));
    assert_eq!(conn.command(&["KEYS", "*"]), Reply::Array(Some(vec![])));

    // INCR keeps the TTL; SET without KEEPTTL drops it; PERSIST removes it.
    conn.command(&["SET", "n", "1", "EX", "100"]);
    assert_eq!(conn.command(&["INCR", "n"]), Reply::Integer(2));
    let left = integer(conn.command(&["TTL", "n"]));
    assert!((90..=100).contains(&left), "TTL after INCR {left}");
    conn.command(&["SET", "n", "3"]);
    assert_eq!(conn.command(&["TTL", "n"]), Reply::Integer(-1));
    conn.command(&["EXPIRE", "n", "100"]);
    assert_eq!(conn.command(&["PERSIST", "n"]), Reply::Integer(1));
    assert_eq!(conn.command(&["TTL", "n"]), Reply::Integer(-1));

    // EXPIRE with a time in the past deletes at once.
    assert_eq!(conn.command(&["EXPIRE", "n", "-5"]), Reply::Integer(1));
    assert_eq!(conn.command(&["EXISTS", "n"]), Reply::Integer(0));

    // An absolute expiry from the wall clock.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    conn.command(&["SET", "at", "v", "EXAT", &(now_s + 100).to_string()]);
    let left = integer(conn.command(&["TTL", "at"]));
    assert!((95..=101).contains(&left), "TTL after EXAT {left}");
}

// ---------------------------------------------------------------------------
// Persistence.

#[track_caller]
fn kill_9(server: &mut Server) {
    server.signal(libc::SIGKILL);
    let status = server.wait_exit(DEADLINE);
    assert!(!status.success(), "killed server exited with {status}");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = TempDir::new("persist");
    let persist = format!("persist={}", dir.file("kv.sqlite"));
    let binary_key: &[u8] = b"key\xff\x00\r\n";
    let binary_value: &[u8] = b"\x00\x01\xfe\xff\r\nvalue";

    let mut server = kv(&[&persist]);
    {
        let mut conn = RespClient::connect(server.port());
        let ok = Reply::Status("OK".into());
        assert_eq!(conn.command(&["SET", "a", "1"]), ok);
        assert_eq!(conn.command(&["SET", "b", "hello", "EX", "1000"]), ok);
        assert_eq!(conn.command(&["SET", "gone", "x", "PX", "200"]), ok);
        assert_eq!(conn.command(&["INCRBY", "n", "41"]), Reply::Integer(41));
        assert_eq!(conn.command(&["INCR", "n"]), Reply::Integer(42));
        assert_eq!(conn.command(&["MSET", "m1", "x", "m2", "y"]), ok);
        assert_eq!(conn.command(&["SET", "d", "z"]), ok);
        assert_eq!(conn.command(&["DEL", "d", "nokey"]), Reply::Integer(1));
        assert_eq!(conn.command(&["SET", "e", "v"]), ok);
        assert_eq!(conn.command(&["EXPIRE", "e", "1000"]), Reply::Integer(1));
        assert_eq!(conn.command(&["SET", "f", "v", "EX", "1000"]), ok);
        assert_eq!(conn.command(&["PERSIST", "f"]), Reply::Integer(1));
        assert_eq!(conn.command_bytes(&[b"SET", binary_key, binary_value]), ok);
        eventually("gone to expire", || {
            conn.command(&["PTTL", "gone"]) == Reply::Integer(-2)
        });
    }
    kill_9(&mut server);

    let mut server = kv(&[&persist]);
    {
        let mut conn = RespClient::connect(server.port());
        assert_eq!(conn.command(&["GET", "a"]), bulk("1"));
        assert_eq!(conn.command(&["GET", "b"]), bulk("hello"));
        let left = integer(conn.command(&["TTL", "b"]));
        assert!(
            (900..=1000).contains(&left),
            "TTL of b after restart: {left}"
        );
        assert_eq!(conn.command(&["GET", "gone"]), Reply::Bulk(None));
        assert_eq!(conn.command(&["GET", "n"]), bulk("42"));
        assert_eq!(conn.command(&["INCR", "n"]), Reply::Integer(43));
        assert_eq!(
            conn.command(&["MGET", "m1", "m2", "d"]),
            Reply::Array(Some(vec![bulk("x"), bulk("y"), Reply::Bulk(None)]))
        );
        assert!(integer(conn.command(&["TTL", "e"])) > 900);
        assert_eq!(conn.command(&["TTL", "f"]), Reply::Integer(-1));
        assert_eq!(
            conn.command_bytes(&[b"GET", binary_key]),
            Reply::Bulk(Some(binary_value.to_vec()))
        );
        assert_eq!(conn.command(&["DBSIZE"]), Reply::Integer(8));

        // FLUSHDB is durable too, and what follows it.
        assert_eq!(conn.command(&["FLUSHDB"]), Reply::Status("OK".into()));
        assert_eq!(
            conn.command(&["SET", "after", "flush"]),
            Reply::Status("OK".into())
        );
    }
    kill_9(&mut server);

    let server = kv(&[&persist]);
    let mut conn = RespClient::connect(server.port());
    assert_eq!(conn.command(&["DBSIZE"]), Reply::Integer(1));
    assert_eq!(conn.command(&["GET", "after"]), bulk("flush"));
    assert_eq!(conn.command(&["GET", "n"]), Reply::Bulk(None));
}

#[test]
fn concurrent_writers_leave_the_file_equal_to_the_store() {
    let dir = TempDir::new("persist-race");
    let persist = format!("persist={}", dir.file("kv.sqlite"));
    let mut server = kv(&[&persist]);
    let port = server.port();
    // Connections land on different hosts, which write to SQLite from
    // several lane threads at once, on the same keys.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            thread::spawn(move || {
                let mut conn = RespClient::connect(port);
                for i in 0..150 {
                    let key = format!("k{}", i % 10);
                    let value = format!("w{w}-{i}");
                    match i % 5 {
                        0 => conn.command(&["DEL", &key]),
                        1 => conn.command(&["INCR", "shared"]),
                        _ => conn.command(&["SET", &key, &value]),
                    };
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut conn = RespClient::connect(port);
    let mut before = Vec::new();
    for i in 0..10 {
        before.push(conn.command(&["GET", &format!("k{i}")]));
    }
    assert_eq!(conn.command(&["GET", "shared"]), bulk("240"));
    drop(conn);
    kill_9(&mut server);

    let server = kv(&[&persist]);
    let mut conn = RespClient::connect(server.port());
    for (i, expected) in before.iter().enumerate() {
        assert_eq!(&conn.command(&["GET", &format!("k{i}")]), expected, "k{i}");
    }
    assert_eq!(conn.command(&["GET", "shared"]), bulk("240"));
}
