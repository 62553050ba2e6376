//! hold-conns: opens many idle TCP connections and keeps them open.
//!
//! Used to measure what an idle connection costs a server (RSS per
//! connection). Connects are nonblocking and paced on two counts so the
//! server's listen backlog is not overrun: at most `--inflight` handshakes at
//! once and at most `--rate` new connects per second. A failed or stuck
//! attempt is retried up to `--retries` times. A loopback handshake completes
//! in the kernel, before the server accepts; a caller that needs the server to
//! have accepted everything should check on the server side (its fd count).
//!
//! Output (stdout): a line starting `up ` once connecting is over, then, after
//! the hold, a final plain line and a JSON line. The connections are never
//! written to; a server that closes one is counted.

use lunet_bench::cli::{self, Args};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: hold-conns --addr HOST:PORT [-n 10000] [--hold 5s] [--inflight 128] [--rate 10000]
                  [--retries 3] [--connect-timeout 20s]

Opens N idle TCP connections (paced), prints `up N/REQUESTED ...` once done,
keeps them open for --hold, then exits.

  --addr HOST:PORT        server (required)
  -n, --connections N     connections to open (default 10000)
  --hold TIME             how long to keep them after connecting (default 5s)
  --inflight N            handshakes in progress at once (default 128)
  --rate N                new connects per second at most (default 10000)
  --retries N             retries of a failed or stuck connect (default 3)
  --connect-timeout TIME  give up connecting after this long (default 20s)";

/// A handshake that has not finished after this long is dropped and retried
/// (a dropped SYN is otherwise only retransmitted after 1 s, then 3 s, ...).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Waiting time before a retry, times the attempt number.
const RETRY_BACKOFF: Duration = Duration::from_millis(50);
/// How often the connect loop wakes to start paced connects and time out attempts.
const TICK: Duration = Duration::from_millis(5);

enum Slot {
    /// Waiting for its (next) attempt, not before `at`.
    Waiting {
        attempt: u32,
        at: Instant,
    },
    Connecting {
        stream: TcpStream,
        attempt: u32,
        since: Instant,
    },
    Up(TcpStream),
    Failed,
    ClosedByPeer,
}

#[derive(Default)]
struct Counts {
    up: usize,
    failed: usize,
    retries: usize,
    closed_by_peer: usize,
    first_error: Option<String>,
}

struct Holder {
    address: SocketAddr,
    poll: Poll,
    slots: Vec<Slot>,
    /// Slots waiting for an attempt, in order.
    queue: VecDeque<usize>,
    connecting: usize,
    max_retries: u32,
    counts: Counts,
}

impl Holder {
    /// Starts a nonblocking connect for slot `index`.
    fn start(&mut self, index: usize, attempt: u32, now: Instant) {
        let started = TcpStream::connect(self.address).and_then(|mut stream| {
            self.poll
                .registry()
                .register(&mut stream, Token(index), Interest::WRITABLE)?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                self.slots[index] = Slot::Connecting {
                    stream,
                    attempt,
                    since: now,
                };
                self.connecting += 1;
            }
            Err(error) => self.attempt_failed(index, attempt, format!("connect: {error}"), now),
        }
    }

    fn attempt_failed(&mut self, index: usize, attempt: u32, why: String, now: Instant) {
        self.counts.first_error.get_or_insert(why);
        if attempt < self.max_retries {
            self.counts.retries += 1;
            self.slots[index] = Slot::Waiting {
                attempt: attempt + 1,
                at: now + RETRY_BACKOFF * (attempt + 1),
            };
            self.queue.push_back(index);
        } else {
            self.slots[index] = Slot::Failed;
            self.counts.failed += 1;
        }
    }

    /// A writable event on a connecting socket: the handshake finished or failed.
    fn on_connect_ready(&mut self, index: usize, now: Instant) {
        let Slot::Connecting {
            stream, attempt, ..
        } = &mut self.slots[index]
        else {
            return;
        };
        let attempt = *attempt;
        let outcome = match stream.take_error() {
            Ok(Some(error)) | Err(error) => Err(error),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                // Spurious wakeup: still connecting.
                Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(error) => Err(error),
            },
        };
        match outcome {
            Ok(false) => {}
            Ok(true) => {
                let Slot::Connecting { mut stream, .. } =
                    std::mem::replace(&mut self.slots[index], Slot::Failed)
                else {
                    unreachable!("checked above");
                };
                self.connecting -= 1;
                // From now on only a close (or stray data) from the server matters.
                match self
                    .poll
                    .registry()
                    .reregister(&mut stream, Token(index), Interest::READABLE)
                {
                    Ok(()) => {
                        self.slots[index] = Slot::Up(stream);
                        self.counts.up += 1;
                    }
                    Err(error) => self.attempt_failed(index, attempt, format!("{error}"), now),
                }
            }
            Err(error) => {
                self.drop_attempt(index);
                self.attempt_failed(index, attempt, format!("connect: {error}"), now);
            }
        }
    }

    fn drop_attempt(&mut self, index: usize) {
        if let Slot::Connecting { mut stream, .. } =
            std::mem::replace(&mut self.slots[index], Slot::Failed)
        {
            let _ = self.poll.registry().deregister(&mut stream);
            self.connecting -= 1;
        }
    }

    /// A readable event on an established connection: stray data is
    /// discarded; end of stream or an error means the server closed it.
    fn on_up_ready(&mut self, index: usize, chunk: &mut [u8]) {
        let Slot::Up(stream) = &mut self.slots[index] else {
            return;
        };
        let closed = loop {
            match stream.read(chunk) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        if closed {
            if let Slot::Up(mut stream) =
                std::mem::replace(&mut self.slots[index], Slot::ClosedByPeer)
            {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            self.counts.up -= 1;
            self.counts.closed_by_peer += 1;
        }
    }

    fn dispatch(&mut self, events: &Events, chunk: &mut [u8], now: Instant) {
        for event in events.iter() {
            let index = event.token().0;
            match self.slots[index] {
                Slot::Connecting { .. } => self.on_connect_ready(index, now),
                Slot::Up(_) => self.on_up_ready(index, chunk),
                _ => {}
            }
        }
    }

    /// Drops and requeues handshakes older than `ATTEMPT_TIMEOUT`.
    fn expire_attempts(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            if let Slot::Connecting { since, attempt, .. } = self.slots[index] {
                if now - since > ATTEMPT_TIMEOUT {
                    self.drop_attempt(index);
                    self.attempt_failed(index, attempt, "connect timed out".into(), now);
                }
            }
        }
    }
}

fn main() {
    let args = Args::from_env(
        USAGE,
        &[
            &["--addr", "-a"],
            &["--connections", "-n"],
            &["--hold"],
            &["--inflight"],
            &["--rate"],
            &["--retries"],
            &["--connect-timeout"],
        ],
    );
    let target = args.required("--addr");
    let address = target
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| cli::fail(USAGE, &format!("cannot resolve --addr `{target}`")));
    let requested: usize = args.get("--connections", 10_000);
    let hold = args.duration("--hold", Duration::from_secs(5));
    let inflight: usize = args.get("--inflight", 128).max(1);
    let rate: f64 = args.get("--rate", 10_000.0f64);
    let connect_timeout = args.duration("--connect-timeout", Duration::from_secs(20));
    if rate.is_nan() || rate <= 0.0 {
        cli::fail(USAGE, "--rate must be more than 0");
    }
    let poll = Poll::new().unwrap_or_else(|error| {
        eprintln!("hold-conns: {error}");
        std::process::exit(1)
    });

    let started = Instant::now();
    let mut holder = Holder {
        address,
        poll,
        slots: (0..requested)
            .map(|_| Slot::Waiting {
                attempt: 0,
                at: started,
            })
            .collect(),
        queue: (0..requested).collect(),
        connecting: 0,
        max_retries: args.get("--retries", 3),
        counts: Counts::default(),
    };
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 4096];
    let mut launched = 0usize;

    // Connect phase.
    let give_up = started + connect_timeout;
    loop {
        let now = Instant::now();
        if holder.counts.up + holder.counts.failed >= requested || now >= give_up {
            break;
        }
        // Launch as many as the pacing allows: `rate` per second since the start.
        let allowed = (now - started).as_secs_f64() * rate + 1.0;
        while holder.connecting < inflight && (launched as f64) < allowed {
            let Some(&index) = holder.queue.front() else {
                break;
            };
            let Slot::Waiting { attempt, at } = holder.slots[index] else {
                unreachable!("queued slots are waiting");
            };
            if at > now {
                break;
            }
            holder.queue.pop_front();
            launched += 1;
            holder.start(index, attempt, now);
        }
        if let Err(error) = holder.poll.poll(&mut events, Some(TICK)) {
            if error.kind() != io::ErrorKind::Interrupted {
                eprintln!("hold-conns: poll: {error}");
                std::process::exit(1);
            }
        }
        let now = Instant::now();
        holder.dispatch(&events, &mut chunk, now);
        holder.expire_attempts(now);
    }
    let connect_time = started.elapsed();
    // Whatever is still connecting at the deadline counts as failed.
    for index in 0..requested {
        if matches!(
            holder.slots[index],
            Slot::Connecting { .. } | Slot::Waiting { .. }
        ) {
            holder.drop_attempt(index);
            holder.slots[index] = Slot::Failed;
            holder.counts.failed += 1;
        }
    }
    if let Some(what) = &holder.counts.first_error {
        eprintln!("hold-conns: first error: {what}");
    }
    println!(
        "up {}/{} in {:.2}s ({} retries, {} failed); holding for {:.1}s",
        holder.counts.up,
        requested,
        connect_time.as_secs_f64(),
        holder.counts.retries,
        holder.counts.failed,
        hold.as_secs_f64()
    );
    let _ = io::stdout().flush();

    // Hold phase: only watch for the server closing connections.
    let hold_end = Instant::now() + hold;
    loop {
        let now = Instant::now();
        if now >= hold_end {
            break;
        }
        if let Err(error) = holder.poll.poll(&mut events, Some(hold_end - now)) {
            if error.kind() != io::ErrorKind::Interrupted {
                eprintln!("hold-conns: poll: {error}");
                break;
            }
        }
        holder.dispatch(&events, &mut chunk, now);
    }
    let counts = &holder.counts;
    println!(
        "hold-conns {address}: {up}/{requested} connections up after a {hold:.1}s hold; \
         {closed} closed by the server, {failed} failed to connect, {retries} retries",
        up = counts.up,
        hold = hold.as_secs_f64(),
        closed = counts.closed_by_peer,
        failed = counts.failed,
        retries = counts.retries,
    );
    println!(
        "{{\"tool\":\"hold-conns\",\"addr\":\"{address}\",\"requested\":{requested},\
         \"up\":{up},\"connect_s\":{connect:.3},\"hold_s\":{hold},\"retries\":{retries},\
         \"failed\":{failed},\"closed_by_peer\":{closed}}}",
        up = counts.up,
        connect = connect_time.as_secs_f64(),
        hold = hold.as_secs_f64(),
        retries = counts.retries,
        failed = counts.failed,
        closed = counts.closed_by_peer,
    );
    if counts.up == 0 && requested > 0 {
        std::process::exit(1);
    }
}
