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

    /// A counter with one sample per worker, labelled with its index.
    fn per_worker(&mut self, name: &str, help: &str, values: impl Iterator<Item = String>) {
        self.head(name, Kind::Counter, help);
        for (index, value) in values.enumerate() {
            let _ = writeln!(self.out, "{name}{{worker=\"{index}\"}} {value}");
        }
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
    w.per_worker(
        "lunet_worker_busy_seconds_total",
        "Time each worker spent running services.",
        snapshot
            .workers
            .iter()
            .map(|worker| seconds(worker.busy.as_secs_f64())),
    );
    w.per_worker(
        "lunet_worker_turns_total",
        "Turns (a service run on a worker) each worker ran.",
        snapshot
            .workers
            .iter()
            .map(|worker| worker.turns.to_string()),
    );
    w.out
}

/// A float as Prometheus reads it (Rust's `Display` never writes an
/// exponent it could not read, and no NaN comes from our counters).
fn seconds(value: f64) -> String {
    format!("{value:.9}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lunet_core::stats::{ServiceSnapshot, Totals, WorkerSnapshot};

    // The grammar of every line is checked against a running server, by
    // tests/admin.rs; here, that the numbers land where they belong.
    #[test]
    fn the_exposition_carries_the_numbers_under_their_help_and_type() {
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
        for expected in [
            "# TYPE lunet_connections_accepted_total counter\nlunet_connections_accepted_total 12\n",
            "# TYPE lunet_mailbox_longest gauge\nlunet_mailbox_longest 4\n",
            "lunet_messages_handled_total 5\n",
            "lunet_service_busy_seconds_total 2.000000000\n",
            "lunet_worker_turns_total{worker=\"0\"} 0\nlunet_worker_turns_total{worker=\"1\"} 0\n",
            "lunet_serving 1\n",
        ] {
            assert!(text.contains(expected), "no {expected:?} in\n{text}");
        }
        assert!(render(&snapshot, false).contains("lunet_serving 0\n"));
        // Every metric has its HELP line right before its TYPE line.
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(
                    lines[at - 1].starts_with(&format!("# HELP {name} ")),
                    "{line}"
                );
            }
        }
    }
}
