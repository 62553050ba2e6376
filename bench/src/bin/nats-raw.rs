//! nats-raw: the limit of the cluster leg (bench/cluster.sh), a NATS
//! request/reply client and responder in plain Rust with no Lua, blocking
//! sockets, NATS's text protocol by hand.
//!
//! - `nats-raw reply ADDR SUBJECT`: answers every request on SUBJECT with
//!   its own payload, until killed.
//! - `nats-raw request ADDR SUBJECT COUNT CONCURRENCY`: COUNT requests with
//!   CONCURRENCY of them in flight on one connection (each its own inbox
//!   subject under one wildcard subscription), every answer checked;
//!   prints `calls_per_s=R`.
//! - `nats-raw sends ADDR COUNT`: COUNT one-way messages on one connection
//!   to a subscriber on another; the rate from the first publish to the
//!   last delivery: `sends_per_s=R`.
//!
//! Payloads are 9 bytes: lunet's codec encoding of one small integer, the
//! size a cross-node `lunet.call(ref, 1)` publishes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

const USAGE: &str = "usage: nats-raw reply ADDR SUBJECT | request ADDR SUBJECT COUNT CONCURRENCY | sends ADDR COUNT";
const PAYLOAD: &[u8] = b"\x01\x00\x00\x00\x03\x01\x00\x00\x00";

/// One connection: a buffered reader and a writer on the same socket.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A message delivered to a subscription.
struct Msg {
    subject: String,
    reply: Option<String>,
    payload: Vec<u8>,
}

impl Connection {
    fn open(addr: &str) -> io::Result<Connection> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut connection = Connection {
            reader: BufReader::with_capacity(1 << 16, stream.try_clone()?),
            writer: stream,
        };
        let info = connection.line()?;
        if !info.starts_with("INFO ") {
            return Err(io::Error::other(format!("not NATS: {info}")));
        }
        connection.writer.write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n",
        )?;
        loop {
            match connection.line()?.as_str() {
                "PONG" => return Ok(connection),
                "+OK" => {}
                other if other.starts_with("INFO") => {}
                other => return Err(io::Error::other(format!("CONNECT: {other}"))),
            }
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(line.trim_end().to_string())
    }

    /// The next message; answers the server's pings on the way.
    fn next_msg(&mut self) -> io::Result<Msg> {
        loop {
            let line = self.line()?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.first().copied() {
                Some("MSG") if fields.len() == 4 || fields.len() == 5 => {
                    let size: usize = fields[fields.len() - 1]
                        .parse()
                        .map_err(|_| io::Error::other(format!("bad MSG: {line}")))?;
                    let mut payload = vec![0; size + 2];
                    self.reader.read_exact(&mut payload)?;
                    payload.truncate(size);
                    return Ok(Msg {
                        subject: fields[1].to_string(),
                        reply: (fields.len() == 5).then(|| fields[3].to_string()),
                        payload,
                    });
                }
                Some("PING") => self.writer.write_all(b"PONG\r\n")?,
                Some("PONG") | Some("+OK") => {}
                _ => return Err(io::Error::other(format!("unexpected: {line}"))),
            }
        }
    }

    /// Appends a PUB to `out` (written by the caller, batched).
    fn publish(out: &mut Vec<u8>, subject: &str, reply: Option<&str>, payload: &[u8]) {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject.as_bytes());
        if let Some(reply) = reply {
            out.push(b' ');
            out.extend_from_slice(reply.as_bytes());
        }
        out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }
}

fn reply(addr: &str, subject: &str) -> io::Result<()> {
    let mut connection = Connection::open(addr)?;
    connection
        .writer
        .write_all(format!("SUB {subject} 1\r\nPING\r\n").as_bytes())?;
    let mut out = Vec::new();
    loop {
        let msg = connection.next_msg()?;
        if let Some(to) = &msg.reply {
            Connection::publish(&mut out, to, None, &msg.payload);
            // Answers written as soon as nothing more is buffered.
            if connection.reader.buffer().is_empty() {
                connection.writer.write_all(&out)?;
                out.clear();
            }
        }
    }
}

fn request(addr: &str, subject: &str, count: u64, concurrency: u64) -> io::Result<()> {
    let mut connection = Connection::open(addr)?;
    let inbox = format!("_INBOX.raw.{}", std::process::id());
    connection
        .writer
        .write_all(format!("SUB {inbox}.* 1\r\n").as_bytes())?;
    let started = Instant::now();
    let mut out = Vec::new();
    let mut sent = 0;
    for _ in 0..concurrency.min(count) {
        sent += 1;
        Connection::publish(&mut out, subject, Some(&format!("{inbox}.{sent}")), PAYLOAD);
    }
    connection.writer.write_all(&out)?;
    out.clear();
    let mut answered = 0;
    while answered < count {
        let msg = connection.next_msg()?;
        if msg.payload != PAYLOAD || !msg.subject.starts_with(&inbox) {
            return Err(io::Error::other("a wrong answer"));
        }
        answered += 1;
        if sent < count {
            sent += 1;
            Connection::publish(&mut out, subject, Some(&format!("{inbox}.{sent}")), PAYLOAD);
        }
        if connection.reader.buffer().is_empty() && !out.is_empty() {
            connection.writer.write_all(&out)?;
            out.clear();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("calls_per_s={:.0}", count as f64 / seconds);
    Ok(())
}

fn sends(addr: &str, count: u64) -> io::Result<()> {
    let mut receiver = Connection::open(addr)?;
    let subject = format!("raw.sends.{}", std::process::id());
    receiver
        .writer
        .write_all(format!("SUB {subject} 1\r\nPING\r\n").as_bytes())?;
    // The subscription is in place once the server has answered the ping.
    while receiver.line()? != "PONG" {}
    let mut sender = Connection::open(addr)?;
    let started = Instant::now();
    let publisher = std::thread::spawn(move || -> io::Result<()> {
        let mut out = Vec::with_capacity(1 << 16);
        for _ in 0..count {
            Connection::publish(&mut out, &subject, None, PAYLOAD);
            if out.len() >= 1 << 15 {
                sender.writer.write_all(&out)?;
                out.clear();
            }
        }
        sender.writer.write_all(&out)?;
        // Keeps the connection open until everything is delivered.
        sender.writer.write_all(b"PING\r\n")?;
        sender.line().map(|_| ())
    });
    let mut received = 0;
    while received < count {
        receiver.next_msg()?;
        received += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    publisher
        .join()
        .map_err(|_| io::Error::other("the publisher panicked"))??;
    println!("sends_per_s={:.0}", count as f64 / seconds);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{USAGE}"))
    };
    let result = match args.first().map(String::as_str) {
        Some("reply") if args.len() == 3 => reply(&args[1], &args[2]),
        Some("request") if args.len() == 5 => request(&args[1], &args[2], number(3), number(4)),
        Some("sends") if args.len() == 3 => sends(&args[1], number(2)),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("nats-raw: {e}");
        std::process::exit(1);
    }
}
