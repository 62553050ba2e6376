//! `GET /metrics`: a [`Snapshot`] in Prometheus' text exposition format
//! 0.0.4 (`# HELP`, `# TYPE`, then `name{label="value"} number` lines).
//! Every name starts with `lunet_`; counters end in `_total`.

use std::fmt::Write;

use lunet_core::stats::Snapshot;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus' two kinds we use.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

struct Writer {
    out: String,
}

impl Writer {
    /// A metric with one sample and no label.
    fn one(&mut self, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    fn head(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }
}

/// The whole exposition. `serving`: the server accepts connections (false
/// while it starts and while it drains).
pub fn render(snapshot: &Snapshot, serving: bool) -> String {
    let totals = snapshot.totals();
    let (queued, longest) = snapshot.mailboxes();
    let mut w = Writer { out: String::new() };
    w.one(
        "lunet_serving",
        Kind::Gauge,
        "1 while the server serves, 0 while it starts or drains.",
        u8::from(serving),
    );
    w.one(
        "lunet_services",
        Kind::Gauge,
        "Live services (Lua VMs and system services).",
        snapshot.services.len(),
    );
    w.one(
        "lunet_connections",
        Kind::Gauge,
        "Accepted connections alive.",
        snapshot.connections,
    );
    w.one(
        "lunet_connections_accepted_total",
        Kind::Counter,
        "Connections accepted.",
        snapshot.accepted,
    );
    w.one(
        "lunet_accepts_refused_total",
        Kind::Counter,
        "Connections closed at accept because --max-conns was reached.",
        snapshot.refused,
    );
    w.one(
        "lunet_sessions",
        Kind::Gauge,
        "Live sessions (coroutines) of every Lua service, as of each one's last turn.",
        snapshot.sessions(),
    );
    w.one(
        "lunet_lua_memory_bytes",
        Kind::Gauge,
        "Bytes used by every Lua VM, as of each one's last turn.",
        snapshot.memory(),
    );
    w.one(
        "lunet_messages_sent_total",
        Kind::Counter,
        "Messages queued in a service's mailbox.",
        totals.messages_queued,
    );
    w.one(
        "lunet_messages_handled_total",
        Kind::Counter,
        "Messages services took from their mailboxes and handled.",
        totals.messages_handled,
    );
    w.one(
        "lunet_events_handled_total",
        Kind::Counter,
        "Events of every kind (readiness, timers, messages, lane results) services handled.",
        totals.events,
    );
    w.one(
        "lunet_mailbox_events",
        Kind::Gauge,
        "Events waiting in every mailbox.",
        queued,
    );
    w.one(
        "lunet_mailbox_longest",
        Kind::Gauge,
        "Events waiting in the longest mailbox.",
        longest,
    );
    w.one(
        "lunet_lane_queue_length",
        Kind::Gauge,
        "Blocking tasks queued for the lane, not yet running.",
        snapshot.lane.queued,
    );
    w.one(
        "lunet_lane_waiting_services",
        Kind::Gauge,
        "Services waiting for a free lane queue slot.",
        snapshot.lane.waiting,
    );
    w.one(
        "lunet_lane_waits_total",
        Kind::Counter,
        "Lane tasks that found the queue full and waited for a slot.",
        snapshot.lane.waits,
    );
    w.one(
        "lunet_lane_tasks_total",
        Kind::Counter,
        "Lane tasks taken by a lane thread.",
        snapshot.lane.taken,
    );
    w.one(
        "lunet_slice_warnings_total",
        Kind::Counter,
        "Slices that ran past --slice-warn and were logged.",
        snapshot.slice_warnings,
    );
    w.one(
        "lunet_slice_kills_total",
        Kind::Counter,
        "Slices that ran past --slice-kill and were interrupted.",
        snapshot.slice_kills,
    );
    w.one(
        "lunet_service_busy_seconds_total",
        Kind::Counter,
        "Time services spent in turns on workers.",
        seconds(totals.busy_ns as f64 / 1e9),
    );
    w.head(
        "lunet_worker_busy_seconds_total",
        Kind::Counter,
        "Time each worker spent running services.",
    );
    for (index, worker) in snapshot.workers.iter().enumerate() {
        let _ = writeln!(
            w.out,
            "lunet_worker_busy_seconds_total{{worker=\"{index}\"}} {}",
            seconds(worker.busy.as_secs_f64())
        );
    }
    w.head(
        "lunet_worker_turns_total",
        Kind::Counter,
        "Turns (a service run on a worker) each worker ran.",
    );
    for (index, worker) in snapshot.workers.iter().enumerate() {
        let _ = writeln!(
            w.out,
            "lunet_worker_turns_total{{worker=\"{index}\"}} {}",
            worker.turns
        );
    }
    w.out
}

/// A float as Prometheus reads it (Rust's `Display` never writes an
/// exponent it could not read, and no NaN comes from our counters).
fn seconds(value: f64) -> String {
    format!("{value:.9}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lunet_core::stats::{ServiceSnapshot, Totals, WorkerSnapshot};
    use std::collections::HashSet;

    /// Checks `text` against the 0.0.4 grammar (the subset a writer of
    /// counters and gauges uses): every sample's metric has HELP and TYPE
    /// lines first, names and labels are well formed, values are numbers.
    /// Returns the samples as (name with labels, value).
    pub(crate) fn check_exposition(text: &str) -> Result<Vec<(String, f64)>, String> {
        let name_ok = |name: &str| {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let mut typed = HashSet::new();
        let mut helped = HashSet::new();
        let mut samples = Vec::new();
        if !text.ends_with('\n') {
            return Err("the exposition must end with a newline".into());
        }
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("");
                if !name_ok(name) || !helped.insert(name.to_string()) {
                    return Err(format!("bad or repeated HELP: {line}"));
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut words = rest.split(' ');
                let (name, kind) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if !name_ok(name) || !["counter", "gauge"].contains(&kind) || words.next().is_some()
                {
                    return Err(format!("bad TYPE: {line}"));
                }
                if !typed.insert(name.to_string()) {
                    return Err(format!("repeated TYPE: {line}"));
                }
            } else if line.starts_with('#') || line.is_empty() {
                return Err(format!("unexpected line: {line:?}"));
            } else {
                let (series, value) = line
                    .rsplit_once(' ')
                    .ok_or_else(|| format!("no value: {line}"))?;
                let name = series.split('{').next().unwrap_or("");
                if !name_ok(name) || !name.starts_with("lunet_") {
                    return Err(format!("bad metric name: {line}"));
                }
                if !typed.contains(name) || !helped.contains(name) {
                    return Err(format!("sample before its HELP and TYPE: {line}"));
                }
                if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .ok_or_else(|| format!("bad labels: {line}"))?;
                    for pair in inner.split(',') {
                        let (label, quoted) = pair
                            .split_once('=')
                            .ok_or_else(|| format!("bad label: {line}"))?;
                        let value_ok = quoted.len() >= 2
                            && quoted.starts_with('"')
                            && quoted.ends_with('"')
                            && !quoted[1..quoted.len() - 1].contains(['"', '\\', '\n']);
                        if !name_ok(label) || !value_ok {
                            return Err(format!("bad label: {line}"));
                        }
                    }
                }
                let number: f64 = value.parse().map_err(|_| format!("bad value: {line}"))?;
                samples.push((series.to_string(), number));
            }
        }
        Ok(samples)
    }

    #[test]
    fn the_exposition_follows_the_grammar_and_carries_the_numbers() {
        let snapshot = Snapshot {
            services: vec![ServiceSnapshot {
                id: 3,
                name: "host-0".into(),
                mailbox: 4,
                connections: 1,
                memory: 1000,
                sessions: 2,
                totals: Totals {
                    turns: 1,
                    events: 9,
                    messages_handled: 5,
                    messages_queued: 6,
                    busy_ns: 2_000_000_000,
                },
            }],
            connections: 1,
            accepted: 12,
            workers: vec![WorkerSnapshot::default(); 2],
            ..Snapshot::default()
        };
        let text = render(&snapshot, true);
        let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let value = |name: &str| {
            samples
                .iter()
                .find(|(series, _)| series == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert_eq!(value("lunet_connections_accepted_total"), 12.0);
        assert_eq!(value("lunet_messages_handled_total"), 5.0);
        assert_eq!(value("lunet_mailbox_longest"), 4.0);
        assert_eq!(value("lunet_service_busy_seconds_total"), 2.0);
        assert_eq!(value("lunet_worker_turns_total{worker=\"1\"}"), 0.0);
        assert_eq!(value("lunet_serving"), 1.0);
        assert!(check_exposition("lunet_x 1\n").is_err(), "no TYPE first");
        assert!(
            check_exposition("# TYPE lunet_x counter\n# HELP lunet_x x\nlunet_x one\n").is_err()
        );
    }
}
