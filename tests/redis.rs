//! `lunet.redis` against a real `redis-server` (Debian's), and against
//! fake servers that misbehave (a reply cut off, garbage); a Redis server
//! that dies between requests and in the middle of a pipeline. Also
//! `sock:readresp` on the server side (`tests/scripts/resp_echo.lua`).
//!
//! The client runs in `tests/scripts/steps.lua`: the test sends Lua, one
//! line per step, and reads what it returned.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::{closed_port, Client, RedisServer as Redis, Server, Steps, DEADLINE};

#[test]
fn calls_return_lua_values() {
    let redis = Redis::start();
    let addr = redis.addr();
    let (_server, mut steps) = Steps::start(&[&format!("redis={addr}")]);
    steps.expect(
        "r = lunet.redis.connect(getenv('redis')) return tostring(r):match('^lunet.redis')",
        "true 'lunet.redis'",
    );
    steps.expect("r:call('SET', 'k', 'v')", "true 'OK'");
    steps.expect("r:call('GET', 'k')", "true 'v'");
    steps.expect("r:call('GET', 'missing')", "true null");
    steps.expect("r:call('GET', 'missing') == lunet.redis.null", "true true");
    steps.expect("r:call('INCR', 'n')", "true 1");
    steps.expect("r:call('INCRBY', 'n', 41)", "true 42");
    steps.expect(
        "r:call('MGET', 'k', 'missing', 'n')",
        "true {'v' null '42'}",
    );
    steps.expect("r:call('LRANGE', 'nolist', 0, -1)", "true {}");
    // Numbers go as Redis expects them: 2.0 as "2".
    steps.expect(
        "r:call('SET', 'f', 2.0) return r:call('GET', 'f')",
        "true '2'",
    );
    steps.expect(
        "r:call('SET', 'g', 0.5) return r:call('GET', 'g')",
        "true '0.5'",
    );
    // Binary-safe both ways, and large.
    steps.expect(
        "r:call('SET', 'b', 'a\\r\\n\\0b') return r:call('GET', 'b')",
        "true 'a\\x0D\\x0A\\x00b'",
    );
    steps.expect(
        "local big = ('x'):rep(3 * 1024 * 1024) r:call('SET', 'big', big) return r:call('GET', 'big') == big",
        "true true",
    );
    // Nested arrays, and an error inside an array as {false, text}.
    steps.expect(
        "r:call('EVAL', \"return {1, {2, 'x'}, redis.error_reply('ERR boom')}\", 0)",
        "true {1 {2 'x'} {false 'ERR boom'}}",
    );
}

#[test]
fn an_error_reply_is_nil_err_and_the_connection_goes_on() {
    let redis = Redis::start();
    let (_server, mut steps) = Steps::start(&[&format!("redis={}", redis.addr())]);
    steps.expect(
        "r = lunet.redis.connect(getenv('redis')) return true",
        "true true",
    );
    steps.expect("r:call('SET', 'k', 'v')", "true 'OK'");
    steps.expect(
        "r:call('INCR', 'k')",
        "true nil 'ERR value is not an integer or out of range'",
    );
    steps.expect(
        "r:call('NOSUCHCOMMAND')",
        "true nil 'ERR unknown command 'NOSUCHCOMMAND', with args beginning with: '",
    );
    steps.expect("r:call('PING')", "true 'PONG'");
}

#[test]
fn pipelining_sends_then_reads_in_order() {
    let redis = Redis::start();
    let (_server, mut steps) = Steps::start(&[&format!("redis={}", redis.addr())]);
    steps.expect(
        "r = lunet.redis.connect(getenv('redis')) return true",
        "true true",
    );
    steps.expect(
        "for i = 1, 500 do assert(r:send('INCR', 'p')) end \
         local last for i = 1, 500 do last = assert(r:read()) end return last",
        "true 500",
    );
    steps.expect(
        "r:send('SET', 'a', '1') r:send('INCR', 'a') r:send('LPUSH', 'a', 'x') \
         return r:send('GET', 'a')",
        "true true",
    );
    steps.expect("r:read()", "true 'OK'");
    steps.expect("r:read()", "true 2");
    steps.expect(
        "r:read()",
        "true nil 'WRONGTYPE Operation against a key holding the wrong kind of value'",
    );
    steps.expect("r:read()", "true '2'");
}

#[test]
fn connect_options_and_misuse() {
    let redis = Redis::start();
    let (_server, mut steps) = Steps::start(&[
        &format!("redis={}", redis.addr()),
        &format!("closed=127.0.0.1:{}", closed_port()),
    ]);
    steps.expect(
        "lunet.redis.connect(getenv('closed'))",
        "true nil 'refused'",
    );
    // db selects the database; a password Redis does not want is refused.
    steps.expect(
        "one = lunet.redis.connect(getenv('redis'), {db = 1, timeout = 5000}) \
         zero = lunet.redis.connect(getenv('redis')) \
         one:call('SET', 'where', 'one') return one:call('GET', 'where'), zero:call('GET', 'where')",
        "true 'one' null",
    );
    let refused = steps.run("lunet.redis.connect(getenv('redis'), {password = 'secret'})");
    assert!(
        refused.starts_with("true nil 'ERR AUTH"),
        "a wrong password: {refused}"
    );
    steps.expect(
        "select(2, pcall(zero.call, zero, 'SET', 'k', {})):match('argument #3 must be a string or a number, got table')",
        "true 'argument #3 must be a string or a number, got table'",
    );
    steps.expect(
        "select(2, pcall(zero.call, zero)):match('expected a command')",
        "true 'expected a command'",
    );
    // Misuse is raised at the caller's line.
    steps.expect(
        "select(2, pcall(function() zero:send('SET', 'k', {}) end)):match('^step:%d+: lunet.redis')",
        "true 'step:1: lunet.redis'",
    );
    steps.expect(
        "select(2, pcall(function() zero:call() end)):match('^step:%d+: lunet.redis')",
        "true 'step:1: lunet.redis'",
    );
    steps.expect(
        "select(2, pcall(lunet.redis.connect, 42)):match('addr must be a string')",
        "true 'addr must be a string'",
    );
    steps.expect("zero:close() return zero:call('PING')", "true nil 'closed'");
    steps.expect("zero:read()", "true nil 'closed'");
    steps.expect("zero:send('PING')", "true nil 'closed'");
}

/// What a dead connection may say: the peer's close or its reset.
fn is_connection_error(answer: &str) -> bool {
    answer == "true nil 'closed'" || answer == "true nil 'reset'"
}

#[test]
fn a_server_that_dies_between_requests() {
    let mut redis = Redis::start();
    let (_server, mut steps) = Steps::start(&[&format!("redis={}", redis.addr())]);
    steps.expect(
        "r = lunet.redis.connect(getenv('redis')) return true",
        "true true",
    );
    steps.expect("r:call('SET', 'k', 'v')", "true 'OK'");
    redis.kill();
    let answer = steps.run("r:call('GET', 'k')");
    assert!(is_connection_error(&answer), "after the kill: {answer}");
    // The client closed its side: no half-read state is reused.
    steps.expect("r:call('GET', 'k')", "true nil 'closed'");
    steps.expect("lunet.redis.connect(getenv('redis'))", "true nil 'refused'");
}

#[test]
fn a_server_that_dies_in_the_middle_of_a_pipeline() {
    let mut redis = Redis::start();
    let (_server, mut steps) = Steps::start(&[&format!("redis={}", redis.addr())]);
    steps.expect(
        "r = lunet.redis.connect(getenv('redis')) return true",
        "true true",
    );
    // BLPOP on an empty list holds its reply until the kill.
    steps.expect(
        "r:send('SET', 'a', '1') r:send('GET', 'a') r:send('BLPOP', 'empty', 0) \
         return r:send('GET', 'a')",
        "true true",
    );
    steps.expect("r:read()", "true 'OK'");
    steps.expect("r:read()", "true '1'");
    // BLPOP's reply and the last GET's are owed when the server dies,
    // whether the read is already waiting or starts after the kill.
    steps.start_step("r:read()");
    redis.kill();
    let answer = steps.line();
    assert!(is_connection_error(&answer), "the read in flight: {answer}");
    steps.expect("r:read()", "true nil 'closed'");
}

/// A server that answers the first command it reads with `reply`, then
/// closes.
fn fake_server(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(reply);
        }
    });
    port
}

#[test]
fn a_reply_cut_off_or_garbage_fails_that_call_and_closes_the_client() {
    let cut = fake_server(b"$10\r\nhello");
    let garbage = fake_server(b"?what is this\r\n");
    let deep = fake_server(
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n\
*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n\
*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
    );
    let (_server, mut steps) = Steps::start(&[
        &format!("cut=127.0.0.1:{cut}"),
        &format!("garbage=127.0.0.1:{garbage}"),
        &format!("deep=127.0.0.1:{deep}"),
    ]);
    steps.expect(
        "r = lunet.redis.connect(getenv('cut')) return r:call('GET', 'k')",
        "true nil 'closed'",
    );
    steps.expect("r:call('GET', 'k')", "true nil 'closed'");
    steps.expect(
        "r = lunet.redis.connect(getenv('garbage')) return r:call('GET', 'k')",
        "true nil 'Protocol error: invalid reply: unknown type byte'",
    );
    steps.expect("r:call('GET', 'k')", "true nil 'closed'");
    steps.expect(
        "r = lunet.redis.connect(getenv('deep')) return r:call('GET', 'k')",
        "true nil 'Protocol error: reply nested too deep'",
    );
}

/// `resp_echo.lua` with `args`, and a raw client.
fn resp_echo(args: &[&str]) -> (Server, Client) {
    let server = Server::start(&common::test_script("resp_echo.lua"), args);
    let client = server.client();
    (server, client)
}

/// Reads one RESP array of bulks (what resp_echo.lua answers) or one line.
fn answer(client: &mut Client) -> String {
    let head = client.line();
    let Some(count) = head.strip_prefix('*') else {
        return head;
    };
    let count: usize = count.trim_end_matches('\r').parse().unwrap();
    let mut words = Vec::new();
    for _ in 0..count {
        let size: usize = client.line()[1..].trim_end_matches('\r').parse().unwrap();
        let word = client.bytes(size + 2);
        words.push(String::from_utf8_lossy(&word[..size]).into_owned());
    }
    format!("{words:?}")
}

#[test]
fn readresp_returns_commands_as_tables_and_waits_for_the_rest() {
    let (_server, mut client) = resp_echo(&[]);
    client.send(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(answer(&mut client), r#"["GET", "k"]"#);
    // Pipelined, inline, empty commands skipped, split anywhere.
    client.send(b"*0\r\nPING\r\n\r\nSET \"a b\" 'c'\r\n*1\r\n$4\r\nPI");
    assert_eq!(answer(&mut client), r#"["PING"]"#);
    assert_eq!(answer(&mut client), r#"["SET", "a b", "c"]"#);
    client.send(b"NG\r\n");
    assert_eq!(answer(&mut client), r#"["PING"]"#);
    // One byte at a time.
    for byte in b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva\r\nl\r\n" {
        client.send([*byte]);
    }
    assert_eq!(answer(&mut client), r#"["SET", "k", "va\r\nl"]"#);
    // A large bulk, in one go.
    let big = vec![b'x'; 1 << 20];
    let mut command = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", big.len()).into_bytes();
    command.extend_from_slice(&big);
    command.extend_from_slice(b"\r\n");
    client.send(&command);
    let answer_big = answer(&mut client);
    assert_eq!(answer_big.len(), big.len() + r#"["ECHO", ""]"#.len());
}

#[test]
fn readresp_gives_redis_protocol_errors() {
    for (input, error) in [
        (&b"*x\r\n"[..], "-Protocol error: invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "-Protocol error: invalid bulk length"),
        (b"*1\r\nx4\r\n", "-Protocol error: expected '$', got 'x'"),
        (
            b"SET \"a b\r\n",
            "-Protocol error: unbalanced quotes in request",
        ),
    ] {
        let (_server, mut client) = resp_echo(&[]);
        client.send(input);
        assert_eq!(client.line(), format!("{error}\r"), "{input:?}");
    }
    // max_bulk bounds a bulk before its data arrives.
    let (_server, mut client) = resp_echo(&["max_bulk=10"]);
    client.send(b"*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n");
    assert_eq!(answer(&mut client), r#"["ECHO", "0123456789"]"#);
    client.send(b"*2\r\n$4\r\nECHO\r\n$11\r\n");
    assert_eq!(client.line(), "-Protocol error: invalid bulk length\r");
    // The peer's close ends the read with "closed".
    let (_server, mut client) = resp_echo(&[]);
    client.send(b"*2\r\n$4\r\nECHO\r\n");
    client.shutdown_write();
    assert_eq!(client.line(), "-closed\r");
}

#[test]
fn a_readresp_that_times_out_keeps_what_arrived() {
    let (_server, mut client) = resp_echo(&["settimeout=50"]);
    client.send(b"*2\r\n$4\r\nECHO\r\n$2\r\nh");
    assert_eq!(client.line(), "+timeout\r");
    client.send(b"i\r\n");
    assert_eq!(answer(&mut client), r#"["ECHO", "hi"]"#);
}
