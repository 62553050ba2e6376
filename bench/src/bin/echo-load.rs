//! echo-load: a closed-loop line-echo load generator.
//!
//! Every connection repeats one round trip: send a `size`-byte line
//! (`size - 1` letters and `\n`), wait for the whole line to come back,
//! compare it byte for byte, record the latency, send the next line. The
//! letters rotate with each round trip, so a stale or misrouted echo is an
//! error rather than a match.
//!
//! Timeline: connect everything (blocking, before the clock starts), then a
//! warmup in which nothing is counted, then the measured window. A round trip
//! counts when it completes inside the window; the rate is those round trips
//! divided by the window. The tool stops by itself at the end of the window.
//!
//! Threads split the connections; each thread owns its own `mio::Poll`, so
//! threads share nothing until they hand back their histograms.

use lunet_bench::cli::{self, Args};
use lunet_bench::report::{Latencies, Summary};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: echo-load --addr HOST:PORT [-c 50] [--size 64] [-d 5s] [--warmup 1s] [-t 1]

Closed-loop line echo load: each of -c connections sends a --size byte line
(size-1 bytes + '\\n'), waits for the full echo, verifies it, repeats. -t
threads split the connections. Prints one plain-text line and one JSON line.

  --addr HOST:PORT        server to load (required)
  -c, --connections N     connections (default 50)
  --size BYTES            line length including the newline (default 64)
  -d, --duration TIME     measured window (default 5s)
  --warmup TIME           unmeasured time before the window (default 1s)
  -t, --threads N         client threads (default 1)";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_CHUNK: usize = 64 * 1024;

struct Config {
    address: SocketAddr,
    connections: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    threads: usize,
}

/// What one thread hands back.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    round_trips: u64,
    errors: u64,
    connected: u64,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

struct Connection {
    stream: TcpStream,
    /// The line in flight and how much of it is written.
    line: Vec<u8>,
    written: usize,
    /// The echo received so far for the line in flight.
    echo: Vec<u8>,
    sequence: u64,
    sent_at: Instant,
}

impl Connection {
    fn new(stream: TcpStream, size: usize, seed: u64, now: Instant) -> Connection {
        let mut connection = Connection {
            stream,
            line: vec![b'\n'; size],
            written: 0,
            echo: Vec::with_capacity(size),
            sequence: seed,
            sent_at: now,
        };
        connection.next_line(now);
        connection
    }

    /// Fills in the next line to send: letters shifted by the sequence number.
    fn next_line(&mut self, now: Instant) {
        self.sequence += 1;
        let body = self.line.len() - 1;
        for (index, byte) in self.line[..body].iter_mut().enumerate() {
            *byte = b'a' + ((index as u64 + self.sequence) % 26) as u8;
        }
        self.written = 0;
        self.echo.clear();
        self.sent_at = now;
    }

    /// Drains readiness: writes what is left of the line, reads until the
    /// socket is empty, and starts the next round trip whenever one completes.
    /// Calls `completed(now, latency)` for each finished round trip.
    fn on_ready(
        &mut self,
        chunk: &mut [u8],
        mut completed: impl FnMut(Instant, Duration),
    ) -> Result<(), String> {
        // A read shorter than the chunk emptied the socket (epoll(7) allows
        // that as the end of an edge), which saves a WouldBlock read per trip.
        let mut drained = false;
        loop {
            while self.written < self.line.len() {
                match self.stream.write(&self.line[self.written..]) {
                    Ok(0) => return Err("write returned 0".into()),
                    Ok(length) => self.written += length,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(format!("write: {error}")),
                }
            }
            if drained {
                return Ok(());
            }
            let length = match self.stream.read(chunk) {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(length) => {
                    drained = length < chunk.len();
                    length
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(format!("read: {error}")),
            };
            self.echo.extend_from_slice(&chunk[..length]);
            if self.echo.len() > self.line.len() || self.written < self.line.len() {
                return Err(format!(
                    "got {} bytes back for a {}-byte line of which {} were sent",
                    self.echo.len(),
                    self.line.len(),
                    self.written
                ));
            }
            if self.echo.len() == self.line.len() {
                if self.echo != self.line {
                    return Err(format!(
                        "echo differs from the line sent: sent {:?}, got {:?}",
                        String::from_utf8_lossy(&self.line),
                        String::from_utf8_lossy(&self.echo)
                    ));
                }
                let now = Instant::now();
                completed(now, now - self.sent_at);
                self.next_line(now);
            }
        }
    }
}

/// Connects `count` connections, waits for every thread to be connected,
/// then runs the warmup and the window.
fn run_thread(config: &Config, count: usize, first: usize, start_line: &Barrier) -> Tally {
    let mut tally = Tally::default();
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let connected = std::net::TcpStream::connect_timeout(&config.address, CONNECT_TIMEOUT)
            .and_then(|stream| {
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            });
        match connected {
            Ok(stream) => streams.push(TcpStream::from_std(stream)),
            Err(error) => tally.error(format!("connect {}: {error}", config.address)),
        }
    }
    tally.connected = streams.len() as u64;
    start_line.wait();

    let mut poll = match Poll::new() {
        Ok(poll) => poll,
        Err(error) => {
            tally.error(format!("poll: {error}"));
            return tally;
        }
    };
    let started = Instant::now();
    let window_start = started + config.warmup;
    let window_end = window_start + config.duration;
    let mut connections: Vec<Option<Connection>> = Vec::with_capacity(streams.len());
    for (index, mut stream) in streams.into_iter().enumerate() {
        let registered = poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        );
        match registered {
            Ok(()) => connections.push(Some(Connection::new(
                stream,
                config.size,
                (first + index) as u64,
                started,
            ))),
            Err(error) => {
                tally.error(format!("register: {error}"));
                connections.push(None);
            }
        }
    }

    let mut live = connections.iter().flatten().count();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; READ_CHUNK];
    // The first writable edge of each connection sends its first line.
    while live > 0 {
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        if let Err(error) = poll.poll(&mut events, Some(window_end - now)) {
            if error.kind() != io::ErrorKind::Interrupted {
                tally.error(format!("poll: {error}"));
                break;
            }
        }
        for event in events.iter() {
            let Some(connection) = connections[event.token().0].as_mut() else {
                continue;
            };
            let latencies = &mut tally.latencies;
            let round_trips = &mut tally.round_trips;
            let outcome = connection.on_ready(&mut chunk, |now, latency| {
                if now >= window_start && now < window_end {
                    latencies.record(latency);
                    *round_trips += 1;
                }
            });
            if let Err(what) = outcome {
                tally.error(what);
                connections[event.token().0] = None;
                live -= 1;
            }
        }
    }
    tally
}

fn main() {
    let args = Args::from_env(
        USAGE,
        &[
            &["--addr", "-a"],
            &["--connections", "-c"],
            &["--size", "-s"],
            &["--duration", "-d"],
            &["--warmup", "-w"],
            &["--threads", "-t"],
        ],
    );
    let target = args.required("--addr");
    let address = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| cli::fail(USAGE, &format!("cannot resolve --addr `{target}`")));
    let config = Config {
        address,
        connections: args.get("--connections", 50),
        size: args.get("--size", 64),
        duration: args.duration("--duration", Duration::from_secs(5)),
        warmup: args.duration("--warmup", Duration::from_secs(1)),
        threads: args.get("--threads", 1),
    };
    if config.size == 0 {
        cli::fail(USAGE, "--size must be at least 1 (the newline)");
    }
    if config.threads == 0 || config.connections < config.threads {
        cli::fail(
            USAGE,
            "need at least one connection per thread and one thread",
        );
    }
    if config.duration.is_zero() {
        cli::fail(USAGE, "--duration must be more than 0");
    }

    let config = Arc::new(config);
    let start_line = Arc::new(Barrier::new(config.threads));
    let mut first = 0;
    let handles: Vec<_> = (0..config.threads)
        .map(|thread| {
            // Spread the remainder: thread t gets one extra while t < remainder.
            let count = config.connections / config.threads
                + usize::from(thread < config.connections % config.threads);
            let (config, start_line, offset) = (config.clone(), start_line.clone(), first);
            first += count;
            std::thread::spawn(move || run_thread(&config, count, offset, &start_line))
        })
        .collect();

    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.join().expect("load thread panicked");
        total.latencies.merge(&tally.latencies);
        total.round_trips += tally.round_trips;
        total.errors += tally.errors;
        total.connected += tally.connected;
        if let Some(what) = tally.first_error {
            total.first_error.get_or_insert(what);
        }
    }
    print_report(&config, &total);
    if total.connected == 0 || total.round_trips == 0 {
        std::process::exit(1);
    }
}

fn print_report(config: &Config, total: &Tally) {
    let rate = total.round_trips as f64 / config.duration.as_secs_f64();
    let Summary {
        p50_us,
        p99_us,
        p999_us,
        max_us,
        ..
    } = total.latencies.summary();
    if let Some(what) = &total.first_error {
        eprintln!("echo-load: first error: {what}");
    }
    println!(
        "echo-load {addr}: {connections} conns x {size} B, {threads} thread(s), {window:.1}s \
         (+{warmup:.1}s warmup): {rate:.0} round trips/s, p50 {p50_us:.1} us, p99 {p99_us:.1} us, \
         p99.9 {p999_us:.1} us, max {max_us:.1} us, {errors} errors",
        addr = config.address,
        connections = config.connections,
        size = config.size,
        threads = config.threads,
        window = config.duration.as_secs_f64(),
        warmup = config.warmup.as_secs_f64(),
        errors = total.errors,
    );
    println!(
        "{{\"tool\":\"echo-load\",\"addr\":\"{addr}\",\"connections\":{connections},\
         \"connected\":{connected},\"size\":{size},\"threads\":{threads},\
         \"duration_s\":{window},\"warmup_s\":{warmup},\"round_trips\":{round_trips},\
         \"rate\":{rate:.1},\"p50_us\":{p50_us:.1},\"p99_us\":{p99_us:.1},\
         \"p999_us\":{p999_us:.1},\"max_us\":{max_us:.1},\"errors\":{errors}}}",
        addr = config.address,
        connections = config.connections,
        connected = total.connected,
        size = config.size,
        threads = config.threads,
        window = config.duration.as_secs_f64(),
        warmup = config.warmup.as_secs_f64(),
        round_trips = total.round_trips,
        errors = total.errors,
    );
}
