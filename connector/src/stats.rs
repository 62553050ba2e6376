//! What a run counts: latency histograms, requests, errors by kind,
//! per-protocol notes. Each client thread (or Lua service) owns one
//! [`Recorder`] behind a mutex it alone locks on the hot path (once per poll
//! batch); the reporter takes the per-second interval out of it.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest latency a histogram holds; longer samples are clamped to it.
const CEILING: Duration = Duration::from_secs(120);

/// A latency histogram in nanoseconds with 3 significant digits.
#[derive(Clone)]
pub struct Latencies {
    pub histogram: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, CEILING.as_nanos() as u64, 3)
            .expect("static histogram bounds are valid");
        Latencies { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let nanos = latency.as_nanos().min(CEILING.as_nanos()) as u64;
        self.histogram.saturating_record(nanos.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds merge");
    }

    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at `quantile` (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1e3
    }

    pub fn max_us(&self) -> f64 {
        self.histogram.max() as f64 / 1e3
    }

    pub fn mean_us(&self) -> f64 {
        self.histogram.mean() / 1e3
    }
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

/// The kinds of error a run reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connect failed or timed out.
    Connect,
    /// A read failed (e.g. reset by the peer).
    Read,
    /// A write failed (e.g. broken pipe).
    Write,
    /// No reply within --timeout.
    Timeout,
    /// The server closed the connection (end of file).
    Closed,
    /// The reply was malformed, did not match, or was an error reply.
    Protocol,
    /// A client script raised an error, or a handler never yielded.
    Script,
}

/// How many kinds there are: the length of the per-kind arrays.
const KINDS: usize = ErrorKind::ALL.len();

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::Protocol,
        ErrorKind::Script,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Closed => "closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Script => "script",
        }
    }

    /// The kind for an error word of the Lua socket API.
    pub fn from_lua(word: &str) -> ErrorKind {
        match word {
            "timeout" => ErrorKind::Timeout,
            "closed" => ErrorKind::Closed,
            "reset" => ErrorKind::Read,
            "refused" | "connect" => ErrorKind::Connect,
            "read" => ErrorKind::Read,
            "write" => ErrorKind::Write,
            _ => ErrorKind::Protocol,
        }
    }

    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Errors by kind with the first message of each kind.
#[derive(Clone, Default, Debug)]
pub struct Errors {
    pub counts: [u64; KINDS],
    pub first: [Option<String>; KINDS],
}

impl Errors {
    pub fn add(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        let index = kind as usize;
        self.counts[index] += 1;
        if self.first[index].is_none() {
            self.first[index] = Some(message());
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn count(&self, kind: ErrorKind) -> u64 {
        self.counts[kind as usize]
    }

    pub fn first(&self, kind: ErrorKind) -> Option<&str> {
        self.first[kind as usize].as_deref()
    }

    pub fn merge(&mut self, other: &Errors) {
        for index in 0..KINDS {
            self.counts[index] += other.counts[index];
            if self.first[index].is_none() {
                self.first[index].clone_from(&other.first[index]);
            }
        }
    }
}

/// What a reply told besides "done", counted by profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    None,
    /// HTTP status code.
    Status(u16),
    /// RESP: a SET answered +OK.
    Set,
    /// RESP: a GET found the value (and it matched).
    Hit,
    /// RESP: a GET found nothing.
    Miss,
}

/// Counters of the notes, for the measured window.
#[derive(Clone, Default, Debug)]
pub struct Notes {
    /// (status, count), in first-seen order; few distinct statuses.
    pub statuses: Vec<(u16, u64)>,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Notes {
    pub fn add(&mut self, note: Note, count: u64) {
        match note {
            Note::None => {}
            Note::Status(code) => match self.statuses.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += count,
                None => self.statuses.push((code, count)),
            },
            Note::Set => self.sets += count,
            Note::Hit => self.hits += count,
            Note::Miss => self.misses += count,
        }
    }

    pub fn merge(&mut self, other: &Notes) {
        for &(code, count) in &other.statuses {
            self.add(Note::Status(code), count);
        }
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
    }
}

/// One second's worth, taken out of the recorders by the reporter.
#[derive(Clone, Default)]
pub struct Interval {
    pub latencies: Latencies,
    /// Requests completed inside the measured window during this interval.
    pub requests: u64,
    /// Requests completed during this interval, warmup included.
    pub completed: u64,
    pub errors: u64,
}

impl Interval {
    pub fn merge(&mut self, other: &Interval) {
        self.latencies.merge(&other.latencies);
        self.requests += other.requests;
        self.completed += other.completed;
        self.errors += other.errors;
    }
}

/// Locks a recorder. A thread that panicked while holding it left counts
/// that are still worth reporting, so a poisoned lock is taken as it is.
pub fn lock(recorder: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    recorder.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything one client thread counts.
pub struct Recorder {
    open_loop: bool,
    window_start: Instant,
    window_end: Instant,
    /// Latency from the intended send time (what a user waits).
    pub corrected: Latencies,
    /// Latency from the actual send time (open loop only: in a closed loop
    /// both are the same).
    pub uncorrected: Latencies,
    pub requests: u64,
    pub errors: Errors,
    pub notes: Notes,
    /// Connections up right now.
    pub up: u64,
    /// Successful connects over the run.
    pub connects: u64,
    /// Connects started again after a connection failed or closed.
    pub reconnects: u64,
    pub interval: Interval,
    /// Bytes written and read over the run.
    pub bytes_out: u64,
    pub bytes_in: u64,
}

impl Recorder {
    pub fn new(open_loop: bool, window_start: Instant, window_end: Instant) -> Recorder {
        Recorder {
            open_loop,
            window_start,
            window_end,
            corrected: Latencies::new(),
            uncorrected: Latencies::new(),
            requests: 0,
            errors: Errors::default(),
            notes: Notes::default(),
            up: 0,
            connects: 0,
            reconnects: 0,
            interval: Interval::default(),
            bytes_out: 0,
            bytes_in: 0,
        }
    }

    /// A reply completed at `now` for a request meant to go at `intended`
    /// and sent at `sent`. Counted only inside the measured window.
    #[inline]
    pub fn complete(&mut self, now: Instant, intended: Instant, sent: Instant, note: Note) {
        self.interval.completed += 1;
        if now < self.window_start || now >= self.window_end {
            return;
        }
        // A scripted request may go out before its intended time (1 ms
        // timer resolution): never count less than the actual wait.
        let latency = now.saturating_duration_since(intended.min(sent));
        self.corrected.record(latency);
        self.interval.latencies.record(latency);
        // In a closed loop both are the same; the report copies it then.
        if self.open_loop {
            self.uncorrected.record(now.saturating_duration_since(sent));
        }
        self.requests += 1;
        self.interval.requests += 1;
        self.notes.add(note, 1);
    }

    /// Bytes read and written, counted over the whole run.
    pub fn transfer(&mut self, bytes_in: u64, bytes_out: u64) {
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
    }

    /// Errors are counted over the whole run, warmup included.
    pub fn error(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        self.errors.add(kind, message);
        self.interval.errors += 1;
    }

    /// Hands the interval to the reporter and starts a new one.
    pub fn take_interval(&mut self) -> Interval {
        let mut fresh = Interval {
            latencies: Latencies::new(),
            ..Interval::default()
        };
        std::mem::swap(&mut fresh, &mut self.interval);
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_quantiles() {
        let start = Instant::now();
        let window_start = start + Duration::from_secs(1);
        let mut recorder =
            Recorder::new(false, window_start, window_start + Duration::from_secs(1));
        // Before the window: completed, not recorded.
        recorder.complete(start, start, start, Note::None);
        for micros in 1..=1000 {
            let sent = window_start;
            let now = sent + Duration::from_micros(micros);
            recorder.complete(now, sent, sent, Note::Status(200));
        }
        assert_eq!(recorder.requests, 1000);
        assert_eq!(recorder.notes.statuses, vec![(200, 1000)]);
        assert!((recorder.corrected.quantile_us(0.5) - 500.0).abs() < 2.0);
        let interval = recorder.take_interval();
        assert_eq!((interval.requests, interval.completed), (1000, 1001));
        assert_eq!(recorder.interval.completed, 0);
    }

    #[test]
    fn errors_keep_the_first_message() {
        let mut errors = Errors::default();
        errors.add(ErrorKind::Connect, || "refused".into());
        errors.add(ErrorKind::Connect, || "later".into());
        errors.add(ErrorKind::Protocol, || "bad".into());
        assert_eq!(errors.total(), 3);
        assert_eq!(errors.first[0].as_deref(), Some("refused"));
        assert_eq!(ErrorKind::from_lua("reset"), ErrorKind::Read);
    }
}
