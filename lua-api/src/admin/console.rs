//! The console's commands (skynet's debug console): parsing a line, and
//! the text of each answer, from a [`Snapshot`]. No I/O here.
//!
//! An answer is lines of text followed by one line `<CMD OK>` or
//! `<CMD Error>`, as skynet's console ends its answers: a client reads
//! until it sees one.

use std::fmt::Write;
use std::time::Duration;

use lunet_core::stats::{ServiceSnapshot, Snapshot};

/// The line that ends an answer that worked.
pub const OK: &str = "<CMD OK>";
/// The line that ends an answer that failed.
pub const ERROR: &str = "<CMD Error>";

/// What the commands are, for `help` and unknown commands.
pub const HELP: &str = "\
help            this list
list            every service: handle, name, modules, memory, mailbox, messages, cpu
stat            the whole server: connections, sessions, messages, lane, slices, workers
mem             memory of each Lua service
gc              a full garbage collection in every Lua service (before and after)
kill HANDLE     kill a service (HANDLE as :12 or 12)
info HANDLE     everything about one service
reload          start new hosts on the script as it is now; the old ones drain
reload MODULE   load a module's file again in every runtime that runs it
";

/// A command line, parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Help,
    List,
    Stat,
    Mem,
    Gc,
    Kill(u64),
    Info(u64),
    /// `reload`, or `reload MODULE`.
    Reload(Option<&'a str>),
}

/// Parses one line; `Ok(None)` for an empty one. The error is the text to
/// answer with.
pub fn parse(line: &str) -> Result<Option<Command<'_>>, String> {
    let mut words = line.split_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    let argument = words.next();
    if words.next().is_some() {
        return Err(format!("{name}: too many arguments"));
    }
    let no_argument = |command| match argument {
        None => Ok(Some(command)),
        Some(_) => Err(format!("{name} takes no argument")),
    };
    match name {
        "help" => no_argument(Command::Help),
        "list" => no_argument(Command::List),
        "stat" => no_argument(Command::Stat),
        "mem" => no_argument(Command::Mem),
        "gc" => no_argument(Command::Gc),
        "kill" => handle(name, argument).map(|id| Some(Command::Kill(id))),
        "info" => handle(name, argument).map(|id| Some(Command::Info(id))),
        "reload" => Ok(Some(Command::Reload(argument))),
        _ => Err(format!("unknown command '{}' (try help)", printable(name))),
    }
}

/// A service handle as `:12` or `12`.
fn handle(command: &str, argument: Option<&str>) -> Result<u64, String> {
    let Some(text) = argument else {
        return Err(format!("{command}: expected a service handle, as :12"));
    };
    text.strip_prefix(':').unwrap_or(text).parse().map_err(|_| {
        format!(
            "{command}: '{}' is not a service handle (as :12)",
            printable(text)
        )
    })
}

/// `text` with control characters escaped, cut to 60 characters: what a
/// client sent, safe to echo back on one line.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(60)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > 60 {
        out.push_str("...");
    }
    out
}

/// A name as one word (quoted if it has spaces or is empty).
fn word(name: &str) -> String {
    if name.is_empty() || name.contains(char::is_whitespace) {
        format!("{name:?}")
    } else {
        name.to_string()
    }
}

/// A service's name as one word.
fn name(service: &ServiceSnapshot) -> String {
    word(&service.name)
}

fn seconds(duration: Duration) -> String {
    format!("{:.6}s", duration.as_secs_f64())
}

fn busy(service: &ServiceSnapshot) -> Duration {
    Duration::from_nanos(service.totals.busy_ns)
}

/// `list`: one line per service; `modules(id)` is what it runs
/// (`name@version,...`, empty for a service that is not a runtime).
pub fn list(snapshot: &Snapshot, modules: &dyn Fn(u64) -> String) -> String {
    let mut out = String::new();
    for service in &snapshot.services {
        let _ = writeln!(
            out,
            ":{} {} modules={} memory={} mailbox={} messages={} cpu={}",
            service.id,
            name(service),
            modules(service.id),
            service.memory,
            service.mailbox,
            service.totals.messages_handled,
            seconds(busy(service)),
        );
    }
    out
}

/// `info HANDLE`: everything about one service, which runs `modules`.
pub fn info(service: &ServiceSnapshot, modules: &str) -> String {
    let totals = &service.totals;
    format!(
        "handle :{}\nname {}\nmodules {}\nmemory {}\nmailbox {}\nsessions {}\nconnections {}\n\
         messages_handled {}\nmessages_queued {}\nevents {}\nturns {}\ncpu {}\n",
        service.id,
        name(service),
        modules,
        service.memory,
        service.mailbox,
        service.sessions,
        service.connections,
        totals.messages_handled,
        totals.messages_queued,
        totals.events,
        totals.turns,
        seconds(busy(service)),
    )
}

/// `stat`: the whole server.
pub fn stat(snapshot: &Snapshot) -> String {
    let totals = snapshot.totals();
    let (queued, longest) = snapshot.mailboxes();
    let mut out = format!(
        "services {}\nconnections {}\naccepted {}\nrefused {}\nsessions {}\nmemory {}\n\
         messages_sent {}\nmessages_handled {}\nevents {}\nmailbox_events {}\nmailbox_longest {}\n\
         lane_queued {}\nlane_waiting {}\nlane_waits {}\nlane_tasks {}\n\
         slice_warnings {}\nslice_kills {}\n",
        snapshot.services.len(),
        snapshot.connections,
        snapshot.accepted,
        snapshot.refused,
        snapshot.sessions(),
        snapshot.memory(),
        totals.messages_queued,
        totals.messages_handled,
        totals.events,
        queued,
        longest,
        snapshot.lane.queued,
        snapshot.lane.waiting,
        snapshot.lane.waits,
        snapshot.lane.taken,
        snapshot.slice_warnings,
        snapshot.slice_kills,
    );
    for (index, worker) in snapshot.workers.iter().enumerate() {
        let _ = writeln!(
            out,
            "worker {index} turns={} busy={}",
            worker.turns,
            seconds(worker.busy)
        );
    }
    out
}

/// `mem`: each service's memory, then the total.
pub fn mem(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    for service in &snapshot.services {
        let _ = writeln!(
            out,
            ":{} {} {} bytes ({:.1} KiB)",
            service.id,
            name(service),
            service.memory,
            service.memory as f64 / 1024.0
        );
    }
    let _ = writeln!(out, "total {} bytes", snapshot.memory());
    out
}

/// One service's part of a `gc` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collected {
    /// Bytes before and after.
    Done(u64, u64),
    /// It did not answer in time (a long slice), or exited meanwhile.
    NoAnswer,
}

/// `gc`: a line per service (sorted by handle), then the totals.
pub fn gc(results: &[(u64, String, Collected)]) -> String {
    let mut out = String::new();
    let (mut before_total, mut after_total) = (0u64, 0u64);
    for (id, name, collected) in results {
        let name = word(name);
        match collected {
            Collected::Done(before, after) => {
                before_total += before;
                after_total += after;
                let _ = writeln!(out, ":{id} {name} before={before} after={after}");
            }
            Collected::NoAnswer => {
                let _ = writeln!(out, ":{id} {name} no answer (busy or exited)");
            }
        }
    }
    let _ = writeln!(out, "total before={before_total} after={after_total}");
    out
}

/// One runtime's part of a `reload MODULE` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// It runs the new code: `a@1 -> a@2`.
    Done(String),
    /// The new code failed to load there; the old one runs on.
    Failed(String),
    /// It did not answer in time, or exited meanwhile.
    NoAnswer,
}

/// `reload MODULE`: a line per runtime (sorted by handle), then a summary;
/// an error unless every runtime took the new code.
pub fn module_reload(module: &str, results: &[(u64, String, Reloaded)]) -> Result<String, String> {
    let mut out = String::new();
    let mut reloaded = 0;
    for (id, name, outcome) in results {
        let name = word(name);
        match outcome {
            Reloaded::Done(text) => {
                reloaded += 1;
                let _ = writeln!(out, ":{id} {name} {text}");
            }
            Reloaded::Failed(error) => {
                // The first line says why; the traceback is in the log.
                let first = error.lines().next().unwrap_or("");
                let _ = writeln!(out, ":{id} {name} failed, the old code runs on: {first}");
            }
            Reloaded::NoAnswer => {
                let _ = writeln!(out, ":{id} {name} no answer (busy or exited)");
            }
        }
    }
    let total = results.len();
    if total == 0 {
        let _ = writeln!(
            out,
            "{module}: compiled again; no runtime runs it now (runtimes spawned from now on load the new code)"
        );
        return Ok(out);
    }
    let _ = writeln!(out, "{module}: reloaded in {reloaded} of {total} runtimes");
    if reloaded == total {
        Ok(out)
    } else {
        Err(out)
    }
}

/// An answer: its text, then the line that ends it.
pub fn answer(text: &str, ok: bool) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(if ok { OK } else { ERROR });
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lunet_core::stats::{Totals, WorkerSnapshot};

    fn service(id: u64, name: &str, memory: usize) -> ServiceSnapshot {
        ServiceSnapshot {
            id,
            name: name.to_string(),
            mailbox: 2,
            connections: 1,
            memory,
            sessions: 3,
            totals: Totals {
                turns: 4,
                events: 5,
                messages_handled: 6,
                messages_queued: 7,
                busy_ns: 1_500_000,
            },
        }
    }

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        assert_eq!(parse("  list "), Ok(Some(Command::List)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("kill :12"), Ok(Some(Command::Kill(12))));
        assert_eq!(parse("info 7"), Ok(Some(Command::Info(7))));
        assert_eq!(parse("reload"), Ok(Some(Command::Reload(None))));
        assert_eq!(parse("reload kv"), Ok(Some(Command::Reload(Some("kv")))));
        assert!(parse("kill")
            .unwrap_err()
            .contains("expected a service handle"));
        assert!(parse("kill :x")
            .unwrap_err()
            .contains("not a service handle"));
        assert!(parse("list all").unwrap_err().contains("takes no argument"));
        assert!(parse("kill 1 2")
            .unwrap_err()
            .contains("too many arguments"));
        let unknown = parse("bogus\u{1b}[2J").unwrap_err();
        assert!(unknown.starts_with("unknown command 'bogus\\u{1b}[2J'"));
    }

    #[test]
    fn answers_list_every_field() {
        let snapshot = Snapshot {
            services: vec![service(1, "host-0", 2048), service(9, "my service", 10)],
            workers: vec![WorkerSnapshot {
                turns: 8,
                busy: Duration::from_millis(2),
            }],
            ..Snapshot::default()
        };
        let modules = |id: u64| {
            if id == 9 {
                "a@1,b@2".to_string()
            } else {
                String::new()
            }
        };
        let listed = list(&snapshot, &modules);
        assert_eq!(
            listed.lines().next(),
            Some(":1 host-0 modules= memory=2048 mailbox=2 messages=6 cpu=0.001500s")
        );
        assert!(listed.contains(" modules=a@1,b@2 "), "{listed}");
        assert!(listed.contains(":9 \"my service\" "));
        assert!(stat(&snapshot).contains("worker 0 turns=8 busy=0.002000s"));
        assert!(stat(&snapshot).contains("messages_sent 14\n"));
        assert!(mem(&snapshot).ends_with("total 2058 bytes\n"));
        assert!(info(&snapshot.services[0], "").contains("connections 1\n"));
        assert!(info(&snapshot.services[1], "a@1").contains("modules a@1\n"));
        let reloaded = module_reload(
            "a",
            &[
                (3, "r".into(), Reloaded::Done("a@1 -> a@2".into())),
                (
                    4,
                    "s".into(),
                    Reloaded::Failed("a.lua:2: boom\nstack traceback:".into()),
                ),
            ],
        )
        .unwrap_err();
        assert!(reloaded.contains(":3 r a@1 -> a@2\n"), "{reloaded}");
        assert!(reloaded.contains(":4 s failed, the old code runs on: a.lua:2: boom\n"));
        assert!(reloaded.ends_with("a: reloaded in 1 of 2 runtimes\n"));
        assert!(module_reload("a", &[])
            .unwrap()
            .contains("no runtime runs it"));
        let report = gc(&[
            (1, "host-0".into(), Collected::Done(100, 40)),
            (2, "stuck".into(), Collected::NoAnswer),
        ]);
        assert!(report.contains(":1 host-0 before=100 after=40\n"));
        assert!(report.contains(":2 stuck no answer"));
        assert!(report.ends_with("total before=100 after=40\n"));
        assert_eq!(
            answer("no such service", false),
            "no such service\n<CMD Error>\n"
        );
        assert_eq!(answer("", true), "<CMD OK>\n");
    }
}
