//! Line echo: the shipped `server-scripts/echo.lua` and
//! `tests/scripts/echo_report.lua` under concurrency, odd segmentation,
//! over-long lines and clients that vanish.

mod common;

use common::{abbreviate, server_script, test_script, Client, End, Server};
use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

fn echo() -> Server {
    Server::start(&server_script("echo.lua"), &[])
}

#[test]
fn echo_one_line() {
    let server = echo();
    let mut client = server.client();
    client.send("hello\n");
    assert_eq!(client.line(), "hello");
}

#[test]
fn echo_1000_concurrent_connections() {
    const CONNECTIONS: usize = 1000;
    const THREADS: usize = 20;
    const ROUNDS: usize = 3;
    let server = echo();
    // All 1,000 are open at once before any of them talks.
    let mut clients: Vec<(usize, Client)> =
        (0..CONNECTIONS).map(|id| (id, server.client())).collect();
    let mut groups: Vec<Vec<(usize, Client)>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (i, client) in clients.drain(..).enumerate() {
        groups[i % THREADS].push(client);
    }
    let workers: Vec<_> = groups
        .into_iter()
        .map(|mut group| {
            thread::spawn(move || {
                for round in 0..ROUNDS {
                    for (id, client) in group.iter_mut() {
                        client.send(format!("connection {id} round {round}\n"));
                    }
                    for (id, client) in group.iter_mut() {
                        assert_eq!(client.line(), format!("connection {id} round {round}"));
                    }
                }
                group.len()
            })
        })
        .collect();
    let answered: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(answered, CONNECTIONS);
}

#[test]
fn pipelined_lines_in_one_segment() {
    let server = echo();
    let mut client = server.client();
    let lines: Vec<String> = (0..200).map(|i| format!("pipelined line {i}")).collect();
    client.send(lines.iter().map(|l| format!("{l}\n")).collect::<String>());
    for expected in &lines {
        assert_eq!(&client.line(), expected);
    }
}

#[test]
fn line_split_across_many_small_writes() {
    let server = echo();
    let mut client = server.client();
    // One byte per write, with pauses so each byte is its own segment.
    for byte in b"split across many segments\n" {
        client.send([*byte]);
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(client.line(), "split across many segments");
    // Line boundaries in the middle of segments.
    for part in ["ab", "c\nde", "f\ng", "hi\n"] {
        client.send(part);
        thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(client.line(), "abc");
    assert_eq!(client.line(), "def");
    assert_eq!(client.line(), "ghi");
}

#[test]
fn crlf_is_stripped_and_bytes_pass_intact() {
    let server = echo();
    let mut client = server.client();
    client.send(b"with cr\r\n\x00\xff\x01binary\n");
    assert_eq!(client.line(), "with cr");
    let mut raw = Vec::new();
    client.reader().read_until(b'\n', &mut raw).unwrap();
    assert_eq!(raw, b"\x00\xff\x01binary\n");
}

#[test]
fn line_over_max_gets_too_long_and_others_keep_working() {
    let server = Server::start(&test_script("echo_report.lua"), &["--max-line", "1024"]);
    let mut bystander = server.client();
    bystander.send("before\n");
    assert_eq!(bystander.line(), "before");

    // Just under the bound passes.
    let mut fits = server.client();
    let long = "y".repeat(1000);
    fits.send(format!("{long}\n"));
    assert_eq!(fits.line(), long);

    let mut offender = server.client();
    offender.send("x".repeat(2000));
    assert_eq!(offender.try_line(), Ok("ERR too long".to_string()));
    offender.end();

    bystander.send("after\n");
    assert_eq!(bystander.line(), "after");
    let mut newcomer = server.client();
    newcomer.send("newcomer\n");
    assert_eq!(newcomer.line(), "newcomer");
}

#[test]
fn line_over_max_is_too_long_even_with_its_newline_in_the_same_segment() {
    // The bound is on the line, not on how its bytes happen to arrive.
    let server = Server::start(&test_script("echo_report.lua"), &["--max-line", "1024"]);
    let mut offender = server.client();
    offender.send(format!("{}\n", "x".repeat(2000)));
    let answer = offender.try_line();
    assert_eq!(
        answer.as_deref().map(abbreviate),
        Ok(abbreviate("ERR too long")),
        "answer to a 2000-byte line with --max-line 1024"
    );
}

#[test]
fn shipped_echo_closes_a_line_over_max() {
    let server = Server::start(&server_script("echo.lua"), &["--max-line", "1024"]);
    let mut offender = server.client();
    offender.send("x".repeat(2000));
    // Closed (FIN) or reset: either way no echo and no hang.
    let end = offender.end();
    assert!(matches!(end, End::Closed | End::Reset));
    let mut other = server.client();
    other.send("still serving\n");
    assert_eq!(other.line(), "still serving");
}

#[test]
fn client_disconnecting_mid_line_does_not_disturb_others() {
    let server = echo();
    let mut bystander = server.client();
    bystander.send("one\n");
    assert_eq!(bystander.line(), "one");

    // Orderly close in the middle of a line.
    let mut quitter = server.client();
    quitter.send("half a li");
    drop(quitter);

    // Abortive close (RST) in the middle of a line.
    let resetter = server.client();
    let mut resetter_stream = resetter.stream().try_clone().unwrap();
    std::io::Write::write_all(&mut resetter_stream, b"another half").unwrap();
    set_linger_zero(&resetter_stream);
    drop(resetter_stream);
    drop(resetter);

    bystander.send("two\n");
    assert_eq!(bystander.line(), "two");
    let mut newcomer = server.client();
    newcomer.send("three\n");
    assert_eq!(newcomer.line(), "three");
}

/// Makes the next close send RST instead of FIN.
fn set_linger_zero(stream: &std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open for the duration of the call and the option
    // value is a valid `linger` of the size passed.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "setsockopt(SO_LINGER)");
}
