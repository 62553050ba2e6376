//! The built-in profiles' client threads: one `mio::Poll` per thread, each
//! connection a state machine, no Lua and no allocation per request in
//! steady state.
//!
//! How one thread runs:
//! 1. Every connection starts in the connect queue. Connects leave the queue
//!    as fast as `--connect-rate` allows (this thread's share of it), bound
//!    to the next `--source` address if any.
//! 2. A connected socket gets requests up to `--pipeline` deep. Closed loop:
//!    a reply frees a slot and the next request goes at once. Open loop
//!    (`-R`): each connection has a schedule, one request every
//!    `connections / rate` seconds; a request is due at its intended time and
//!    its latency counts from then, so a slow server cannot hide its stalls
//!    by delaying the requests that would have measured them (coordinated
//!    omission). The schedule goes on while a connection is down.
//! 3. Readiness is edge-triggered: each event writes what is pending and
//!    reads until the socket is empty, parsing every reply in the input.
//! 4. Any error (connect, read, write, reply timeout, close, bad reply) is
//!    counted by kind; the connection is closed and connects again: at once
//!    if it had completed a request, else after a back-off that doubles with
//!    each failure in a row (`backoff.rs`).
//! 5. A timer heap holds schedule and back-off wake-ups; a sweep every
//!    100 ms finds connects and replies older than `--timeout`.
//! 6. A connection reads at most [`READ_BUDGET`] chunks per turn; one with
//!    more to read waits for the next poll round (its edge is remembered),
//!    so a server that streams without end cannot hold the thread.
//! 7. The thread stops by itself at the end of the run (or when the stop
//!    flag is set). It locks its [`Recorder`] once per poll round.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::args::{Plan, Workload};
use crate::backoff::Backoff;
use crate::protocol::{Echo, Exchange, Http, Idle, Parsed, Raw, Resp, Rng};
use crate::stats::{lock, ErrorKind, Recorder};
use crate::{Error, Timeline};

/// Bytes read per syscall; a short read means the socket is empty.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks one connection reads per turn (1 MiB) before the others get
/// theirs.
const READ_BUDGET: usize = 16;
/// How often replies and connects are checked against `--timeout`.
const SWEEP: Duration = Duration::from_millis(100);
/// Connect-rate burst: at most this many connects at once after an idle spell.
const CONNECT_BURST: f64 = 16.0;
/// The token of the open loop's timer descriptor.
const ALARM: Token = Token(usize::MAX);

/// A timerfd: epoll's own timeout has millisecond resolution, which would
/// send every open-loop request up to 1 ms late and count that as latency.
struct Alarm {
    fd: std::os::fd::OwnedFd,
}

impl Alarm {
    fn new(poll: &Poll) -> io::Result<Alarm> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create has no pointer arguments; a non-negative
        // result is a new descriptor that we own from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        poll.registry().register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            ALARM,
            Interest::READABLE,
        )?;
        Ok(Alarm { fd })
    }

    /// Fires once, `after` from now.
    fn arm(&self, after: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid descriptor and pointers to a live itimerspec; the
        // old value is not asked for.
        let result =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiration so the next one is a new edge. Nothing to
    /// read (`WouldBlock`: the edge was stale) is fine.
    fn clear(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut count = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64.
        let read = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut count as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        if read < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::WouldBlock {
                return Err(error);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the connect queue or backing off.
    Down,
    Connecting,
    Up,
}

struct Connection<P> {
    stream: Option<TcpStream>,
    phase: Phase,
    exchange: P,
    out: Vec<u8>,
    written: usize,
    /// Unparsed reply bytes kept between reads.
    input: Vec<u8>,
    /// (intended, sent) of each request in flight, oldest first.
    in_flight: VecDeque<(Instant, Instant)>,
    /// Open loop: when the next request is due. Set at the first connect.
    next_intended: Option<Instant>,
    /// The wake-up this connection has in the timer heap (entries that do
    /// not match are stale and skipped).
    timer: Option<Instant>,
    /// When the current connect started; once up, when it came up.
    since: Instant,
    /// A request completed since the connect: the back-off starts afresh.
    answered: bool,
    /// A connect was tried before: the next one counts as a reconnect.
    attempted: bool,
    backoff: Backoff,
    source: Option<IpAddr>,
    /// Position among all connections of the run (spreads the schedule).
    global: usize,
}

/// Why a connection stops.
enum Stop {
    Error(ErrorKind, String),
    /// The server announced a close (HTTP `Connection: close`): reconnect
    /// without counting an error.
    Graceful,
}

type Verdict = Result<(), Stop>;

fn fail(kind: ErrorKind, message: String) -> Verdict {
    Err(Stop::Error(kind, message))
}

/// Starts a non-blocking connect from `source` if given (core's
/// `connect_from`: the port is picked at connect time, per source and
/// target). The error says which source failed.
fn open(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    lunet_core::net::connect_from(target, source).map_err(|e| match source {
        Some(ip) => io::Error::new(e.kind(), format!("from {ip}: {e}")),
        None => e,
    })
}

/// Starts the client threads of a built-in profile.
pub fn spawn(
    plan: &Arc<Plan>,
    timeline: &Timeline,
    recorders: &[Arc<Mutex<Recorder>>],
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, Error> {
    let mut first = 0;
    (0..plan.threads)
        .map(|thread| {
            let count = plan.connections_of(thread);
            let offset = first;
            first += count;
            let (plan, timeline) = (plan.clone(), *timeline);
            let (recorder, stop) = (recorders[thread].clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("load-{thread}"))
                .spawn(move || {
                    let context = Context {
                        plan: &plan,
                        timeline,
                        recorder: &recorder,
                        stop: &stop,
                        first: offset,
                        count,
                    };
                    match &plan.workload {
                        Workload::Echo { size } => {
                            let lines = Echo::lines(*size);
                            context.run(|g| Echo::new(lines.clone(), g as u64 * 7))
                        }
                        Workload::Http(spec) => {
                            let spec = Arc::new(spec.clone());
                            context.run(|_| Http::new(spec.clone()))
                        }
                        Workload::Resp(spec) => {
                            let spec = Arc::new(spec.clone());
                            context.run(|g| Resp::new(spec.clone(), g as u64 + 1))
                        }
                        Workload::Raw(spec) => {
                            let spec = Arc::new(spec.clone());
                            context.run(|_| Raw::new(spec.clone()))
                        }
                        Workload::Hold => context.run(|_| Idle),
                        Workload::Script { .. } => unreachable!("scripts run in Lua services"),
                    }
                })
        })
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| Error::Start(format!("cannot start a load thread: {e}")))
}

struct Context<'a> {
    plan: &'a Plan,
    timeline: Timeline,
    recorder: &'a Mutex<Recorder>,
    stop: &'a AtomicBool,
    /// Global index of this thread's first connection.
    first: usize,
    count: usize,
}

/// The mutable state of one thread's loop.
struct Driver<'a, P> {
    plan: &'a Plan,
    poll: Poll,
    connections: Vec<Connection<P>>,
    connect_queue: VecDeque<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Open loop: time between two requests of one connection.
    interval: Option<Duration>,
    /// Connect pacing: tokens for this thread's share of --connect-rate.
    connect_tokens: f64,
    connect_per_second: f64,
    connect_refill: Instant,
    chunk: Vec<u8>,
    hold: bool,
    alarm: Option<Alarm>,
    /// Connections that spent their read budget with bytes left to read,
    /// and whether their peer had closed: driven again next round.
    unfinished: Vec<(usize, bool)>,
    /// Jitter of the reconnect back-off.
    rng: Rng,
}

impl Context<'_> {
    fn run<P: Exchange>(&self, mut make: impl FnMut(usize) -> P) {
        let plan = self.plan;
        let poll = match Poll::new() {
            Ok(poll) => poll,
            Err(e) => {
                lock(self.recorder)
                    .error(ErrorKind::Connect, || format!("cannot create a poll: {e}"));
                return;
            }
        };
        let start = self.timeline.start;
        let connections = (0..self.count)
            .map(|index| {
                let global = self.first + index;
                Connection {
                    stream: None,
                    phase: Phase::Down,
                    exchange: make(global),
                    out: Vec::new(),
                    written: 0,
                    input: Vec::new(),
                    in_flight: VecDeque::new(),
                    next_intended: None,
                    timer: None,
                    since: start,
                    answered: false,
                    attempted: false,
                    backoff: Backoff::default(),
                    source: (!plan.sources.is_empty())
                        .then(|| plan.sources[global % plan.sources.len()]),
                    global,
                }
            })
            .collect();
        let connect_per_second = plan.connect_rate / plan.threads as f64;
        let alarm = if plan.open_loop() {
            match Alarm::new(&poll) {
                Ok(alarm) => Some(alarm),
                Err(e) => {
                    lock(self.recorder).error(ErrorKind::Connect, || {
                        format!("cannot create a timerfd: {e}")
                    });
                    return;
                }
            }
        } else {
            None
        };
        let mut driver = Driver {
            plan,
            poll,
            connections,
            connect_queue: (0..self.count).collect(),
            timers: BinaryHeap::new(),
            interval: plan
                .open_loop()
                .then(|| Duration::from_secs_f64(plan.connections as f64 / plan.rate)),
            connect_tokens: 1.0,
            connect_per_second,
            connect_refill: start,
            chunk: vec![0; READ_CHUNK],
            hold: plan.hold(),
            alarm,
            unfinished: Vec::new(),
            rng: Rng::new(self.first as u64 + 1),
        };
        driver.run(self.timeline.end, self.recorder, self.stop);
    }
}

impl<P: Exchange> Driver<'_, P> {
    fn run(&mut self, end: Instant, recorder: &Mutex<Recorder>, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP;
        let mut timeout = Some(Duration::ZERO);
        loop {
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    lock(recorder).error(ErrorKind::Read, || format!("poll: {e}"));
                    return;
                }
            }
            let mut now = Instant::now();
            if now >= end || stop.load(Ordering::Relaxed) {
                break;
            }
            let mut recorder = lock(recorder);
            // Those left over from the last round go after this round's
            // events; new ones wait for the next round.
            let unfinished = std::mem::take(&mut self.unfinished);
            for event in events.iter() {
                if event.token() == ALARM {
                    if let Some(alarm) = &self.alarm {
                        if let Err(e) = alarm.clear() {
                            recorder.error(ErrorKind::Read, || format!("timerfd read: {e}"));
                        }
                    }
                    continue;
                }
                let index = event.token().0;
                self.on_event(
                    index,
                    event.is_read_closed() || event.is_error(),
                    &mut recorder,
                );
            }
            for (index, closed) in unfinished {
                if self.connections[index].phase == Phase::Up {
                    let verdict = self.drive(index, closed, &mut recorder);
                    self.settle(index, verdict, &mut recorder);
                }
            }
            now = Instant::now();
            self.connect_due(now, &mut recorder);
            while let Some(&Reverse((at, index))) = self.timers.peek() {
                if at > now {
                    break;
                }
                self.timers.pop();
                if self.connections[index].timer != Some(at) {
                    continue;
                }
                self.connections[index].timer = None;
                match self.connections[index].phase {
                    Phase::Down => self.connect_queue.push_back(index),
                    Phase::Up => {
                        let verdict = self.drive(index, false, &mut recorder);
                        self.settle(index, verdict, &mut recorder);
                    }
                    Phase::Connecting => {}
                }
            }
            if !self.connect_queue.is_empty() {
                self.connect_due(now, &mut recorder);
            }
            if now >= next_sweep {
                self.sweep(now, &mut recorder);
                next_sweep = now + SWEEP;
            }
            drop(recorder);

            let mut wake = end.min(next_sweep);
            if let Some(&Reverse((at, _))) = self.timers.peek() {
                wake = wake.min(at);
            }
            if !self.connect_queue.is_empty() {
                wake = wake.min(self.next_connect_slot(now));
            }
            if !self.unfinished.is_empty() {
                wake = now;
            }
            let wait = wake.saturating_duration_since(Instant::now());
            timeout = Some(wait);
            if let Some(alarm) = &self.alarm {
                // The alarm wakes the poll on time and the poll's own
                // timeout is a backstop; if the alarm cannot be armed, the
                // poll's millisecond timeout does the job alone.
                if !wait.is_zero() && alarm.arm(wait).is_ok() {
                    timeout = Some(wait + Duration::from_millis(2));
                }
            }
        }
        // `up` stays as it was at the end: the summary reports it.
        for connection in &mut self.connections {
            connection.stream = None;
        }
    }

    fn next_connect_slot(&self, now: Instant) -> Instant {
        if self.connect_per_second <= 0.0 || self.connect_tokens >= 1.0 {
            return now;
        }
        let missing = 1.0 - self.connect_tokens;
        now + Duration::from_secs_f64(missing / self.connect_per_second)
    }

    /// Starts the connects the connect rate allows now.
    fn connect_due(&mut self, now: Instant, recorder: &mut Recorder) {
        if self.connect_per_second > 0.0 {
            let elapsed = now
                .saturating_duration_since(self.connect_refill)
                .as_secs_f64();
            self.connect_tokens =
                (self.connect_tokens + elapsed * self.connect_per_second).min(CONNECT_BURST);
            self.connect_refill = now;
        }
        while let Some(&index) = self.connect_queue.front() {
            if self.connect_per_second > 0.0 {
                if self.connect_tokens < 1.0 {
                    break;
                }
                self.connect_tokens -= 1.0;
            }
            self.connect_queue.pop_front();
            self.connect(index, now, recorder);
        }
    }

    fn connect(&mut self, index: usize, now: Instant, recorder: &mut Recorder) {
        let target = self.plan.target;
        let connection = &mut self.connections[index];
        if connection.phase != Phase::Down {
            return;
        }
        if connection.attempted {
            recorder.reconnects += 1;
        }
        connection.attempted = true;
        connection.since = now;
        let opened = open(target, connection.source).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                connection.stream = Some(stream);
                connection.phase = Phase::Connecting;
            }
            Err(e) => {
                recorder.error(ErrorKind::Connect, || format!("connect {target}: {e}"));
                self.reconnect(index, now);
            }
        }
    }

    /// Connects a closed connection again: at once if it had done its job
    /// (`answered`), else after its back-off.
    fn reconnect(&mut self, index: usize, now: Instant) {
        let connection = &mut self.connections[index];
        if connection.answered {
            connection.answered = false;
            connection.backoff.reset();
            self.connect_queue.push_back(index);
        } else {
            let wait = connection.backoff.next(&mut self.rng);
            self.schedule(index, now + wait);
        }
    }

    fn schedule(&mut self, index: usize, at: Instant) {
        let connection = &mut self.connections[index];
        if connection.timer.is_some_and(|t| t <= at) {
            return;
        }
        connection.timer = Some(at);
        self.timers.push(Reverse((at, index)));
    }

    fn on_event(&mut self, index: usize, closed: bool, recorder: &mut Recorder) {
        let Some(connection) = self.connections.get_mut(index) else {
            return;
        };
        match connection.phase {
            Phase::Down => {}
            Phase::Connecting => {
                let Some(stream) = connection.stream.as_ref() else {
                    return;
                };
                // mio: after a writable or error event, take_error and then
                // peer_addr tell whether the connect finished.
                let result = match stream.take_error() {
                    Ok(Some(e)) | Err(e) => Err(e),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Ok(true),
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok(false) => {}
                    Ok(true) => {
                        let now = Instant::now();
                        connection.phase = Phase::Up;
                        connection.since = now;
                        recorder.up += 1;
                        recorder.connects += 1;
                        if let (None, Some(interval)) = (connection.next_intended, self.interval) {
                            // Spread the first requests over one interval.
                            let share = connection.global as f64 / self.plan.connections as f64;
                            connection.next_intended = Some(now + interval.mul_f64(share));
                        }
                        let verdict = self.drive(index, closed, recorder);
                        self.settle(index, verdict, recorder);
                    }
                    Err(e) => {
                        let target = self.plan.target;
                        recorder.error(ErrorKind::Connect, || format!("connect {target}: {e}"));
                        self.close(index, recorder);
                        self.reconnect(index, Instant::now());
                    }
                }
            }
            Phase::Up => {
                let verdict = self.drive(index, closed, recorder);
                self.settle(index, verdict, recorder);
            }
        }
    }

    /// Applies the end of a drive: an error or a close reconnects.
    fn settle(&mut self, index: usize, verdict: Verdict, recorder: &mut Recorder) {
        let stop = match verdict {
            Ok(()) => return,
            Err(stop) => stop,
        };
        if let Stop::Error(kind, message) = stop {
            recorder.error(kind, || message);
        }
        let now = Instant::now();
        // An idle connection (`--hold`) did its job if it stayed up for
        // the longest back-off.
        let connection = &mut self.connections[index];
        if self.hold && now.saturating_duration_since(connection.since) >= crate::backoff::MAX {
            connection.answered = true;
        }
        self.close(index, recorder);
        self.reconnect(index, now);
    }

    fn close(&mut self, index: usize, recorder: &mut Recorder) {
        let connection = &mut self.connections[index];
        if let Some(mut stream) = connection.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        if connection.phase == Phase::Up {
            recorder.up -= 1;
        }
        connection.phase = Phase::Down;
        connection.timer = None;
        // `answered` stays for `reconnect`, which clears it.
        connection.exchange.reset();
        connection.in_flight.clear();
        connection.out.clear();
        connection.written = 0;
        connection.input.clear();
    }

    /// Queues the requests that are due (closed loop: as many as the
    /// pipeline holds; open loop: those whose intended time has come).
    fn fill(&mut self, index: usize, now: Option<Instant>) {
        let depth = self.plan.pipeline;
        let connection = &mut self.connections[index];
        if self.hold || connection.in_flight.len() >= depth {
            return;
        }
        let now = now.unwrap_or_else(Instant::now);
        let mut wake = None;
        while connection.in_flight.len() < depth {
            let intended = match (self.interval, connection.next_intended) {
                (Some(interval), Some(due)) => {
                    if due > now {
                        wake = Some(due);
                        break;
                    }
                    connection.next_intended = Some(due + interval);
                    due
                }
                _ => now,
            };
            connection.exchange.write_request(&mut connection.out);
            connection.in_flight.push_back((intended, now));
        }
        if let Some(at) = wake {
            self.schedule(index, at);
        }
    }

    /// Writes what is pending, reads everything readable, parses the
    /// replies and queues the next requests, until the socket would block.
    fn drive(&mut self, index: usize, closed: bool, recorder: &mut Recorder) -> Verdict {
        self.fill(index, None);
        let mut drained = false;
        let mut reads = 0;
        loop {
            let connection = &mut self.connections[index];
            let Some(stream) = connection.stream.as_mut() else {
                return Ok(());
            };
            while connection.written < connection.out.len() {
                match stream.write(&connection.out[connection.written..]) {
                    Ok(0) => return fail(ErrorKind::Write, "write returned 0".into()),
                    Ok(n) => {
                        connection.written += n;
                        recorder.bytes_out += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return fail(ErrorKind::Write, format!("write: {e}")),
                }
            }
            if connection.written == connection.out.len() {
                connection.out.clear();
                connection.written = 0;
            }
            if drained {
                return Ok(());
            }
            if reads == READ_BUDGET {
                // More may be waiting; the edge will not come again.
                self.unfinished.push((index, closed));
                return Ok(());
            }
            reads += 1;
            let read = match stream.read(&mut self.chunk) {
                Ok(0) => {
                    let what = if connection.in_flight.is_empty() {
                        "the server closed the connection".to_string()
                    } else {
                        format!(
                            "the server closed the connection with {} request(s) in flight",
                            connection.in_flight.len()
                        )
                    };
                    return fail(ErrorKind::Closed, what);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return fail(ErrorKind::Read, format!("read: {e}")),
            };
            // A short read emptied the socket (the end of an edge, epoll(7)),
            // which saves a WouldBlock read per round trip; not when the peer
            // closed, whose end of file must be seen.
            drained = read < self.chunk.len() && !closed;
            recorder.bytes_in += read as u64;
            let now = Instant::now();
            self.replies(index, read, now, recorder)?;
            self.fill(index, Some(now));
        }
    }

    /// Parses the replies in the new `read` bytes of the chunk (after any
    /// kept input) and records them.
    fn replies(
        &mut self,
        index: usize,
        read: usize,
        now: Instant,
        recorder: &mut Recorder,
    ) -> Verdict {
        let Connection {
            exchange,
            input,
            in_flight,
            answered,
            ..
        } = &mut self.connections[index];
        let from_chunk = input.is_empty();
        if !from_chunk {
            input.extend_from_slice(&self.chunk[..read]);
        }
        let data: &[u8] = if from_chunk {
            &self.chunk[..read]
        } else {
            input
        };
        let mut at = 0;
        let mut verdict = Ok(());
        while at < data.len() {
            match exchange.parse(&data[at..]) {
                Parsed::Incomplete => break,
                Parsed::Partial { consumed } => {
                    at += consumed;
                    break;
                }
                Parsed::Done {
                    consumed,
                    outcome,
                    close,
                } => {
                    at += consumed;
                    let Some((intended, sent)) = in_flight.pop_front() else {
                        verdict = fail(ErrorKind::Protocol, "a reply nobody asked for".into());
                        break;
                    };
                    match outcome {
                        Ok(note) => {
                            *answered = true;
                            recorder.complete(now, intended, sent, note);
                        }
                        Err(message) => {
                            verdict = fail(ErrorKind::Protocol, message);
                            break;
                        }
                    }
                    if close {
                        verdict = Err(Stop::Graceful);
                        break;
                    }
                }
            }
        }
        verdict?;
        if from_chunk {
            if at < read {
                input.extend_from_slice(&self.chunk[at..read]);
            }
        } else {
            input.drain(..at);
        }
        Ok(())
    }

    /// Finds connects and replies older than --timeout.
    fn sweep(&mut self, now: Instant, recorder: &mut Recorder) {
        let timeout = self.plan.timeout;
        for index in 0..self.connections.len() {
            let connection = &self.connections[index];
            let late = match connection.phase {
                Phase::Down => continue,
                Phase::Connecting => now.saturating_duration_since(connection.since) > timeout,
                Phase::Up => connection
                    .in_flight
                    .front()
                    .is_some_and(|&(_, sent)| now.saturating_duration_since(sent) > timeout),
            };
            if !late {
                continue;
            }
            let target = self.plan.target;
            if connection.phase == Phase::Connecting {
                recorder.error(ErrorKind::Connect, || {
                    format!("connect {target}: no answer within {timeout:?}")
                });
            } else {
                recorder.error(ErrorKind::Timeout, || {
                    format!("no reply from {target} within {timeout:?}")
                });
            }
            self.close(index, recorder);
            self.reconnect(index, now);
        }
    }
}
