//! What a run prints and writes: a progress line per second, the final
//! summary, `--json` and `--hdr-log`.
//!
//! The reporter runs on the main thread. Once a second it takes the interval
//! out of every recorder (a short lock each), prints one line and appends
//! one histogram to the interval log. The intervals partition the run, so
//! their request and error counts add up to the totals exactly.
//!
//! Every 50 ms it also asks whether the run must end early (a signal,
//! stdout gone) and whether there is news to print at once (the first
//! script error). A run that ends early is reported like a whole one, over
//! the time it really ran.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::args::Plan;
use crate::console::Console;
use crate::stats::{lock, ErrorKind, Errors, Interval, Latencies, Notes, Recorder};
use crate::{Error, Timeline};

/// How often the reporter looks for an early end and for news.
const CHECK: Duration = Duration::from_millis(50);

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// At the end of `--warmup` + `--duration`.
    Finished,
    /// SIGINT or SIGTERM.
    Signal(i32),
    /// Stdout's reader went away.
    OutputClosed,
}

impl End {
    /// What the report says stopped the run (none for a whole run).
    pub fn cause(self) -> Option<&'static str> {
        match self {
            End::Finished => None,
            End::Signal(signal) => Some(crate::signals::name(signal)),
            End::OutputClosed => Some("stdout closed"),
        }
    }
}
/// One row of the per-second record.
pub struct Row {
    /// Seconds since the start of the run at the end of the interval.
    pub at: f64,
    pub length: f64,
    pub warmup: bool,
    pub requests: u64,
    pub completed: u64,
    pub errors: u64,
    pub p99_us: f64,
    pub up: u64,
}

pub struct Report {
    plan: Arc<Plan>,
    timeline: Timeline,
    rows: Vec<Row>,
    console: Console,
    hdr_log: Option<BufWriter<File>>,
    serializer: V2DeflateSerializer,
    /// How the run ended and when (set by [`Report::watch`]).
    end: End,
    ended_at: Option<Instant>,
}

/// The merged totals of all recorders.
pub struct Totals {
    pub corrected: Latencies,
    pub uncorrected: Latencies,
    pub requests: u64,
    pub errors: Errors,
    pub notes: Notes,
    pub up: u64,
    pub connects: u64,
    pub reconnects: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

fn ms(micros: f64) -> String {
    if micros >= 1e6 {
        format!("{:.2}s", micros / 1e6)
    } else if micros >= 1e3 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{micros:.0}us")
    }
}

impl Report {
    /// Opens the output files first, so a bad path fails before the load.
    pub fn new(plan: Arc<Plan>, timeline: Timeline) -> Result<Report, Error> {
        let hdr_log = match &plan.hdr_log {
            None => None,
            Some(path) => {
                let file = File::create(path)
                    .map_err(|e| Error::Output(format!("--hdr-log {}: {e}", path.display())))?;
                let mut file = BufWriter::new(file);
                let mut serializer = V2DeflateSerializer::new();
                let now = SystemTime::now();
                IntervalLogWriterBuilder::new()
                    .add_comment(&format!(
                        "lunet load {} {}: latency in nanoseconds from the intended send time, one histogram per second",
                        plan.profile_name, plan.target
                    ))
                    .with_start_time(now)
                    .with_base_time(now)
                    .begin_log_with(&mut file, &mut serializer)
                    .map_err(|e| Error::Output(format!("--hdr-log: {e}")))?;
                writeln!(
                    file,
                    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
                )
                .map_err(|e| Error::Output(format!("--hdr-log: {e}")))?;
                Some(file)
            }
        };
        if let Some(path) = &plan.json {
            File::create(path)
                .map_err(|e| Error::Output(format!("--json {}: {e}", path.display())))?;
        }
        Ok(Report {
            plan,
            timeline,
            rows: Vec::new(),
            console: Console::new(),
            hdr_log,
            serializer: V2DeflateSerializer::new(),
            end: End::Finished,
            ended_at: None,
        })
    }

    /// Prints what the run is about to do.
    pub fn banner(&mut self) {
        if self.plan.quiet {
            return;
        }
        let plan = &self.plan;
        let pacing = if plan.hold() {
            "holding idle connections".to_string()
        } else if plan.open_loop() {
            format!("open loop at {} req/s", plan.rate)
        } else {
            "closed loop".to_string()
        };
        let banner = format!(
            "lunet load {} {}: {} connections, {} threads, {:.1}s{}, {pacing}",
            plan.profile_name,
            plan.target,
            plan.connections,
            plan.threads,
            plan.duration.as_secs_f64(),
            if plan.warmup.is_zero() {
                String::new()
            } else {
                format!(" after {:.1}s warmup", plan.warmup.as_secs_f64())
            },
        );
        self.console.line(&banner);
    }

    /// Reports once a second until the end of the run, or until
    /// `stopped` names a reason to end it early (asked every 50 ms, as is
    /// `news`, whose text goes to stderr at once).
    pub fn watch(
        &mut self,
        recorders: &[Arc<Mutex<Recorder>>],
        stopped: &dyn Fn() -> Option<End>,
        news: &dyn Fn() -> Option<String>,
    ) -> End {
        let start = self.timeline.start;
        let end = self.timeline.end;
        let mut second = 1u32;
        let ended = 'run: loop {
            let tick = (start + Duration::from_secs(u64::from(second))).min(end);
            loop {
                let now = Instant::now();
                if now >= tick {
                    break;
                }
                std::thread::sleep((tick - now).min(CHECK));
                if let Some(text) = news() {
                    self.end_progress_line();
                    let _ = writeln!(std::io::stderr(), "{text}");
                }
                let early = stopped().or(self.console.closed().then_some(End::OutputClosed));
                if let Some(early) = early {
                    break 'run early;
                }
            }
            self.take(recorders, Instant::now());
            if tick >= end {
                break End::Finished;
            }
            second += 1;
        };
        if ended != End::Finished {
            // The part of a second since the last row is a row too.
            self.take(recorders, Instant::now());
            self.ended_at = Some(Instant::now());
        }
        self.end = ended;
        self.end_progress_line();
        ended
    }

    /// On a terminal the progress line is rewritten in place: end it before
    /// anything else is printed.
    fn end_progress_line(&mut self) {
        if self.console.terminal() && !self.plan.quiet && !self.rows.is_empty() {
            self.console.write("\n");
        }
    }

    /// Takes one interval out of every recorder and reports it.
    fn take(&mut self, recorders: &[Arc<Mutex<Recorder>>], now: Instant) {
        let mut interval = Interval::default();
        let mut up = 0;
        for recorder in recorders {
            let mut recorder = lock(recorder);
            interval.merge(&recorder.take_interval());
            up += recorder.up;
        }
        let at = now
            .saturating_duration_since(self.timeline.start)
            .as_secs_f64();
        let previous = self.rows.last().map_or(0.0, |r| r.at);
        let length = (at - previous).max(1e-6);
        let warmup = now <= self.timeline.window_start;
        let row = Row {
            at,
            length,
            warmup,
            requests: interval.requests,
            completed: interval.completed,
            errors: interval.errors,
            p99_us: interval.latencies.quantile_us(0.99),
            up,
        };
        if let Some(log) = &mut self.hdr_log {
            let mut writer = IntervalLogWriterBuilder::new()
                .begin_log_with(log, &mut self.serializer)
                .expect("a builder without headers writes nothing");
            let started = Duration::from_secs_f64(previous);
            let _ = writer.write_histogram(
                &interval.latencies.histogram,
                started,
                Duration::from_secs_f64(length),
                None,
            );
        }
        if !self.plan.quiet {
            self.progress(&row);
        }
        self.rows.push(row);
    }

    fn progress(&mut self, row: &Row) {
        let plan = &self.plan;
        let mut line = format!("[{:>5.1}s] ", row.at);
        if plan.hold() {
            let _ = write!(line, "up {}/{}", row.up, plan.connections);
        } else {
            let rate = row.completed as f64 / row.length;
            let _ = write!(line, "{rate:>9.0} req/s");
            if row.warmup {
                line.push_str("  (warmup)");
            } else {
                let _ = write!(line, "  p99 {:>8}", ms(row.p99_us));
            }
            let _ = write!(line, "  up {}", row.up);
        }
        let _ = write!(line, "  errors {}", row.errors);
        if self.console.terminal() {
            self.console.write(&format!("\r{line:<70}"));
        } else {
            self.console.line(&line);
        }
    }

    /// Adds what the threads did after the last tick to the last row and
    /// merges the recorders.
    pub fn totals(&mut self, recorders: &[Arc<Mutex<Recorder>>]) -> Totals {
        let mut totals = Totals {
            corrected: Latencies::new(),
            uncorrected: Latencies::new(),
            requests: 0,
            errors: Errors::default(),
            notes: Notes::default(),
            up: 0,
            connects: 0,
            reconnects: 0,
            bytes_in: 0,
            bytes_out: 0,
        };
        let mut tail = Interval::default();
        for recorder in recorders {
            let mut recorder = lock(recorder);
            tail.merge(&recorder.take_interval());
            totals.corrected.merge(&recorder.corrected);
            totals.uncorrected.merge(&recorder.uncorrected);
            totals.requests += recorder.requests;
            totals.errors.merge(&recorder.errors);
            totals.notes.merge(&recorder.notes);
            totals.up += recorder.up;
            totals.connects += recorder.connects;
            totals.reconnects += recorder.reconnects;
            totals.bytes_in += recorder.bytes_in;
            totals.bytes_out += recorder.bytes_out;
        }
        if !self.plan.open_loop() {
            totals.uncorrected = totals.corrected.clone();
        }
        if let Some(last) = self.rows.last_mut() {
            last.requests += tail.requests;
            last.completed += tail.completed;
            last.errors += tail.errors;
        }
        if let Some(log) = &mut self.hdr_log {
            let _ = log.flush();
        }
        totals
    }

    /// The peak of connections up seen by the per-second rows.
    fn peak_up(&self) -> u64 {
        self.rows.iter().map(|r| r.up).max().unwrap_or(0)
    }

    /// Prints the summary and writes --json.
    pub fn finish(&mut self, totals: &Totals) -> Result<(), Error> {
        let summary = self.summary(totals);
        self.console.write(&summary);
        if let Some(path) = &self.plan.json {
            let json = self.json(totals);
            std::fs::write(path, json)
                .map_err(|e| Error::Output(format!("--json {}: {e}", path.display())))?;
        }
        Ok(())
    }

    /// Seconds of the measured window that ran: `--duration`, or less if
    /// the run ended early.
    fn window(&self) -> f64 {
        match self.ended_at {
            Some(at) if at < self.timeline.end => at
                .saturating_duration_since(self.timeline.window_start)
                .as_secs_f64(),
            _ => self.plan.duration.as_secs_f64(),
        }
    }

    /// Seconds of the whole run (warmup included) that ran.
    fn total_seconds(&self) -> f64 {
        match self.ended_at {
            Some(at) if at < self.timeline.end => at
                .saturating_duration_since(self.timeline.start)
                .as_secs_f64(),
            _ => (self.plan.warmup + self.plan.duration).as_secs_f64(),
        }
    }

    /// A rate per second over `seconds` (0 when no time passed).
    fn per_second(count: f64, seconds: f64) -> f64 {
        if seconds > 0.0 {
            count / seconds
        } else {
            0.0
        }
    }

    pub fn summary(&self, totals: &Totals) -> String {
        let plan = &self.plan;
        let mut out = String::new();
        if let Some(cause) = self.end.cause() {
            let _ = writeln!(
                out,
                "stopped by {cause} after {:.1}s of {:.1}s: the figures below cover the time that ran",
                self.total_seconds(),
                (plan.warmup + plan.duration).as_secs_f64()
            );
        }
        if plan.hold() {
            let _ = writeln!(
                out,
                "held {} of {} connections up at the end (peak {}), {} connects, {} reconnects",
                totals.up,
                plan.connections,
                self.peak_up().max(totals.up),
                totals.connects,
                totals.reconnects
            );
        } else {
            let rate = Self::per_second(totals.requests as f64, self.window());
            let _ = writeln!(
                out,
                "{} requests in {:.1}s: {rate:.0} req/s, {} errors",
                totals.requests,
                self.window(),
                totals.errors.total()
            );
            let quantiles = |latencies: &Latencies| {
                format!(
                    "p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  mean {}",
                    ms(latencies.quantile_us(0.50)),
                    ms(latencies.quantile_us(0.90)),
                    ms(latencies.quantile_us(0.99)),
                    ms(latencies.quantile_us(0.999)),
                    ms(latencies.quantile_us(0.9999)),
                    ms(latencies.max_us()),
                    ms(latencies.mean_us())
                )
            };
            if plan.open_loop() {
                let _ = writeln!(out, "latency     {}", quantiles(&totals.corrected));
                let _ = writeln!(
                    out,
                    "uncorrected {}  (from the actual send time)",
                    quantiles(&totals.uncorrected)
                );
            } else {
                let _ = writeln!(out, "latency  {}", quantiles(&totals.corrected));
            }
            let notes = &totals.notes;
            if !notes.statuses.is_empty() {
                let mut statuses = notes.statuses.clone();
                statuses.sort_unstable();
                let list: Vec<String> = statuses.iter().map(|(c, n)| format!("{c}: {n}")).collect();
                let _ = writeln!(out, "statuses {}", list.join(", "));
            }
            if notes.sets + notes.hits + notes.misses > 0 {
                let _ = writeln!(
                    out,
                    "resp     {} SET, {} GET hits, {} GET misses",
                    notes.sets, notes.hits, notes.misses
                );
            }
            let _ = writeln!(
                out,
                "transfer {:.1} MB/s in, {:.1} MB/s out (whole run)",
                Self::per_second(totals.bytes_in as f64 / 1e6, self.total_seconds()),
                Self::per_second(totals.bytes_out as f64 / 1e6, self.total_seconds())
            );
            let _ = writeln!(
                out,
                "connects {}, reconnects {} (whole run)",
                totals.connects, totals.reconnects
            );
        }
        let kinds: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.name(), totals.errors.counts[*k as usize]))
            .collect();
        let _ = writeln!(out, "errors   {} (whole run)", kinds.join(", "));
        for kind in ErrorKind::ALL {
            if let Some(first) = totals.errors.first(kind) {
                // A script error carries a traceback: its first line here,
                // the whole of it on stderr and in --json.
                let first = first.lines().next().unwrap_or_default();
                let _ = writeln!(out, "  first {} error: {first}", kind.name());
            }
        }
        out
    }

    pub fn json(&self, totals: &Totals) -> String {
        let plan = &self.plan;
        let mut out = String::from("{\n");
        let field = |out: &mut String, name: &str, value: String| {
            let _ = writeln!(out, "  \"{name}\": {value},");
        };
        field(&mut out, "tool", json_string("lunet load"));
        field(&mut out, "profile", json_string(&plan.profile_name));
        field(&mut out, "target", json_string(&plan.target.to_string()));
        field(&mut out, "connections", plan.connections.to_string());
        field(&mut out, "threads", plan.threads.to_string());
        field(
            &mut out,
            "duration_s",
            json_number(plan.duration.as_secs_f64()),
        );
        field(&mut out, "warmup_s", json_number(plan.warmup.as_secs_f64()));
        field(&mut out, "rate", json_number(plan.rate));
        field(&mut out, "pipeline", plan.pipeline.to_string());
        field(
            &mut out,
            "stopped_by",
            self.end.cause().map_or("null".to_string(), json_string),
        );
        field(&mut out, "elapsed_s", json_number(self.total_seconds()));
        field(&mut out, "requests", totals.requests.to_string());
        field(
            &mut out,
            "requests_per_s",
            json_number(Self::per_second(totals.requests as f64, self.window())),
        );
        field(&mut out, "connects", totals.connects.to_string());
        field(&mut out, "reconnects", totals.reconnects.to_string());
        field(&mut out, "up_at_end", totals.up.to_string());
        field(
            &mut out,
            "peak_up",
            self.peak_up().max(totals.up).to_string(),
        );
        field(&mut out, "bytes_in", totals.bytes_in.to_string());
        field(&mut out, "bytes_out", totals.bytes_out.to_string());
        field(&mut out, "latency_us", latency_json(&totals.corrected));
        field(
            &mut out,
            "uncorrected_latency_us",
            latency_json(&totals.uncorrected),
        );
        let mut errors = String::from("{");
        for kind in ErrorKind::ALL {
            let _ = write!(
                errors,
                "\"{}\": {}, ",
                kind.name(),
                totals.errors.counts[kind as usize]
            );
        }
        let _ = write!(errors, "\"total\": {}}}", totals.errors.total());
        field(&mut out, "errors", errors);
        let mut first = String::from("{");
        let mut separator = "";
        for kind in ErrorKind::ALL {
            if let Some(message) = &totals.errors.first[kind as usize] {
                let _ = write!(
                    first,
                    "{separator}\"{}\": {}",
                    kind.name(),
                    json_string(message)
                );
                separator = ", ";
            }
        }
        first.push('}');
        field(&mut out, "first_errors", first);
        let mut statuses = totals.notes.statuses.clone();
        statuses.sort_unstable();
        let statuses: Vec<String> = statuses
            .iter()
            .map(|(c, n)| format!("\"{c}\": {n}"))
            .collect();
        field(&mut out, "statuses", format!("{{{}}}", statuses.join(", ")));
        field(
            &mut out,
            "resp",
            format!(
                "{{\"sets\": {}, \"hits\": {}, \"misses\": {}}}",
                totals.notes.sets, totals.notes.hits, totals.notes.misses
            ),
        );
        field(
            &mut out,
            "script_error",
            totals
                .errors
                .first(ErrorKind::Script)
                .map_or("null".to_string(), json_string),
        );
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "    {{\"t\": {}, \"length\": {}, \"warmup\": {}, \"requests\": {}, \"completed\": {}, \"errors\": {}, \"p99_us\": {}, \"up\": {}}}",
                    json_number(r.at),
                    json_number(r.length),
                    r.warmup,
                    r.requests,
                    r.completed,
                    r.errors,
                    json_number(r.p99_us),
                    r.up
                )
            })
            .collect();
        let _ = writeln!(out, "  \"intervals\": [\n{}\n  ]", rows.join(",\n"));
        out.push_str("}\n");
        out
    }
}

fn latency_json(latencies: &Latencies) -> String {
    format!(
        "{{\"samples\": {}, \"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"p99_99\": {}, \"max\": {}, \"mean\": {}}}",
        latencies.len(),
        json_number(latencies.quantile_us(0.50)),
        json_number(latencies.quantile_us(0.90)),
        json_number(latencies.quantile_us(0.99)),
        json_number(latencies.quantile_us(0.999)),
        json_number(latencies.quantile_us(0.9999)),
        json_number(latencies.max_us()),
        json_number(latencies.mean_us()),
    )
}

fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{:.3}", value)
    } else {
        "null".to_string()
    }
}

/// A JSON string literal with the required escapes.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
