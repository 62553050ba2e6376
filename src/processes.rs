//! `lunet serve --processes N`: a supervisor (nginx's master) that runs N
//! server processes (its workers) on shared listening sockets, restarts
//! one that dies, and hands them its signals.
//!
//! Protocol:
//! 1. The supervisor runs no Lua and binds nothing. It starts each process
//!    as `lunet serve --supervised INDEX ...` with its own command line,
//!    and a pipe on the process's fd 3 (`REPORT_FD`) for its reports.
//! 2. A supervised process binds its listeners with SO_REUSEPORT: each
//!    process has a socket of its own on the same address, and the kernel
//!    spreads new connections over them (by a hash of the client's address
//!    and port). Once its first hosts serve, it reports `listen KEY ADDR`
//!    for every listener but the admin console's (each process has its
//!    own, on `--admin`'s port + its index) and then `serving`. A process that dies takes its
//!    socket with it; new connections go to the others until it is back.
//! 3. Process 0 starts first. What it bound for a port 0 is handed to the
//!    others (`--bind-as KEY=ADDR`, `listeners.rs` step 5), so that
//!    `listen=127.0.0.1:0` gives one port served by all. Then the others
//!    start. A process that ends before it reports `serving`, while the
//!    server starts, stops them all: the command fails, as one process
//!    would.
//! 4. Once serving, a process that ends (crash, kill -9, out of memory) is
//!    started again after a back-off: 100 ms, doubled for each death in a
//!    row, at most 10 s; a process that lived `STABLE` or longer before it
//!    died starts the count again.
//! 5. SIGHUP is sent on to every process (each reloads its script).
//!    SIGINT and SIGTERM are sent on to every process, no restart follows,
//!    and the supervisor exits once all have: each drains within
//!    `--grace`; one still running `STOP_MARGIN` after that is killed.
//! 6. A process learns that the supervisor is gone from
//!    `PR_SET_PDEATHSIG` (SIGTERM: it drains and stops).
//!
//! Each process has its own hosts, services and shared dicts: they share
//! nothing but the listening addresses (docs/operations.md).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::signals;

/// The fd on which a supervised process writes its reports (step 1).
pub const REPORT_FD: i32 = 3;
/// A process that lived this long before it died is restarted without
/// waiting (step 4).
const STABLE: Duration = Duration::from_secs(10);
/// The first back-off, doubled for each death in a row (step 4).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(10);
/// How long after `--grace` a stopping process is given before SIGKILL.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// What the supervisor's thread is told.
enum Notice {
    Signal(i32),
    /// A line of a process's report: its slot and which start of it.
    Report(usize, u64, String),
    /// A process's report pipe closed: it has exited.
    Ended(usize, u64),
}

/// One of the N processes, across its restarts.
struct Slot {
    child: Option<Child>,
    /// Counts the starts of this slot: notices of an older start are stale.
    start: u64,
    started_at: Instant,
    serving: bool,
    /// Deaths in a row (step 4).
    deaths: u32,
    restart_at: Option<Instant>,
}

struct Supervisor {
    count: usize,
    grace: Duration,
    /// The command line after `serve`, given to every process.
    arguments: Vec<OsString>,
    /// Step 3: listener keys and what process 0 bound for them.
    bind_as: Vec<(String, String)>,
    slots: Vec<Slot>,
    sender: Sender<Notice>,
}

/// Runs `count` supervised processes of this `lunet serve` command until
/// SIGINT/SIGTERM (`Ok`) or until one fails to start (`Err`).
pub fn supervise(count: usize, grace: Duration) -> Result<()> {
    let signals_set = signals::block()?;
    let (sender, notices) = mpsc::channel();
    {
        let sender = sender.clone();
        signals::forward(signals_set, move |signal| {
            sender.send(Notice::Signal(signal)).is_ok()
        })?;
    }
    // `lunet serve ARGS...`: every process gets ARGS.
    let arguments: Vec<OsString> = std::env::args_os().skip(2).collect();
    let mut supervisor = Supervisor {
        count,
        grace,
        arguments,
        bind_as: Vec::new(),
        slots: Vec::new(),
        sender,
    };
    let outcome = supervisor.start(&notices);
    match outcome {
        Ok(true) => {
            tracing::info!("serving with {count} processes");
            supervisor.run(&notices);
            Ok(())
        }
        Ok(false) => Ok(()), // told to stop while starting: done
        Err(e) => {
            supervisor.stop_all(&notices, libc::SIGTERM);
            Err(e)
        }
    }
}

impl Supervisor {
    /// Step 3. `Ok(false)`: a signal stopped the start (already handled).
    fn start(&mut self, notices: &Receiver<Notice>) -> Result<bool> {
        for index in 0..self.count {
            self.slots.push(Slot {
                child: None,
                start: 0,
                started_at: Instant::now(),
                serving: false,
                deaths: 0,
                restart_at: None,
            });
            self.spawn(index)?;
            // Process 0 alone first: the others bind what it bound.
            if index == 0 && !self.wait_serving(notices, 1)? {
                return Ok(false);
            }
        }
        self.wait_serving(notices, self.count)
    }

    /// Waits until the first `count` slots serve. `Ok(false)`: a stop signal
    /// came (the processes are stopped).
    fn wait_serving(&mut self, notices: &Receiver<Notice>, count: usize) -> Result<bool> {
        while !self.slots[..count].iter().all(|slot| slot.serving) {
            let Ok(notice) = notices.recv() else {
                bail!("the supervisor's channel closed");
            };
            match notice {
                Notice::Signal(libc::SIGHUP) => {
                    tracing::info!("SIGHUP while starting: sent on to the processes");
                    self.signal_all(libc::SIGHUP);
                }
                Notice::Signal(signal) => {
                    tracing::info!("{}: stopping the processes", signals::name(signal));
                    self.stop_all(notices, signal);
                    return Ok(false);
                }
                Notice::Report(index, start, line) => self.report(index, start, &line),
                Notice::Ended(index, start) => {
                    if self.slots[index].start != start {
                        continue;
                    }
                    let status = self.reap(index);
                    bail!(
                        "process {index} {} before it served",
                        describe(status.as_ref())
                    );
                }
            }
        }
        Ok(true)
    }

    /// Steps 4 and 5, once every process has served.
    fn run(&mut self, notices: &Receiver<Notice>) {
        loop {
            let next = self.slots.iter().filter_map(|slot| slot.restart_at).min();
            let notice = match next {
                None => notices.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => notices.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match notice {
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => self.restart_due(),
                Ok(Notice::Signal(libc::SIGHUP)) => {
                    tracing::info!("SIGHUP: every process reloads");
                    self.signal_all(libc::SIGHUP);
                }
                Ok(Notice::Signal(signal)) => {
                    tracing::info!(
                        "{}: stopping {} processes (--grace {}s)",
                        signals::name(signal),
                        self.count,
                        self.grace.as_secs_f64()
                    );
                    self.stop_all(notices, signal);
                    return;
                }
                Ok(Notice::Report(index, start, line)) => self.report(index, start, &line),
                Ok(Notice::Ended(index, start)) => {
                    if self.slots[index].start == start {
                        self.ended(index);
                    }
                }
            }
        }
    }

    /// A process ended on its own: schedule its restart (step 4).
    fn ended(&mut self, index: usize) {
        let status = self.reap(index);
        let slot = &mut self.slots[index];
        if slot.started_at.elapsed() >= STABLE {
            slot.deaths = 0;
        }
        let backoff = backoff(slot.deaths);
        slot.deaths = slot.deaths.saturating_add(1);
        slot.restart_at = Some(Instant::now() + backoff);
        tracing::warn!(
            "process {index} {}; starting it again in {} ms",
            describe(status.as_ref()),
            backoff.as_millis()
        );
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        for index in 0..self.slots.len() {
            if self.slots[index].restart_at.is_some_and(|at| at <= now) {
                self.slots[index].restart_at = None;
                if let Err(e) = self.spawn(index) {
                    tracing::error!("cannot start process {index} again: {e:#}");
                    self.ended(index);
                }
            }
        }
    }

    /// Handles one line of a process's report (step 2).
    fn report(&mut self, index: usize, start: u64, line: &str) {
        let slot = &mut self.slots[index];
        if slot.start != start {
            return;
        }
        if line == "serving" {
            slot.serving = true;
            if slot.start > 1 {
                tracing::info!(
                    "process {index} (pid {}) serves again",
                    slot.child.as_ref().map_or(0, Child::id)
                );
            }
            return;
        }
        // Only process 0's first start decides what a port 0 becomes.
        if let Some(bound) = line.strip_prefix("listen ") {
            if index == 0 && start == 1 {
                if let Some((key, addr)) = bound.split_once(' ') {
                    self.bind_as.push((key.to_string(), addr.to_string()));
                }
            }
        }
    }

    /// Starts (or restarts) the process of slot `index` (step 1).
    fn spawn(&mut self, index: usize) -> Result<()> {
        let (read, write) = pipe().context("cannot make a pipe for a process's reports")?;
        let mut command = Command::new(std::env::current_exe().context("cannot find lunet")?);
        command
            .arg("serve")
            .arg("--supervised")
            .arg(index.to_string());
        for (key, addr) in &self.bind_as {
            command.arg("--bind-as").arg(format!("{key}={addr}"));
        }
        command.args(&self.arguments);
        let write_fd = write.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls:
        // dup2, fcntl and prctl on this process's own fds and state.
        unsafe {
            command.pre_exec(move || {
                if write_fd == REPORT_FD {
                    // dup2 onto itself keeps close-on-exec: clear it.
                    if libc::fcntl(REPORT_FD, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(write_fd, REPORT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Step 6.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start process {index}"))?;
        // Ours closes here: the pipe ends when the process does.
        drop(write);
        let slot = &mut self.slots[index];
        slot.start += 1;
        slot.started_at = Instant::now();
        slot.serving = false;
        tracing::info!("process {index} started (pid {})", child.id());
        slot.child = Some(child);
        let (sender, start) = (self.sender.clone(), slot.start);
        std::thread::Builder::new()
            .name(format!("lunet-report-{index}"))
            .spawn(move || {
                let reader = BufReader::new(File::from(read));
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if sender.send(Notice::Report(index, start, line)).is_err() {
                        return;
                    }
                }
                let _ = sender.send(Notice::Ended(index, start));
            })
            .context("cannot start a report thread")?;
        Ok(())
    }

    /// Waits for the process of slot `index`, which has closed its report
    /// pipe: only its exit closes it (the process marks it close-on-exec).
    fn reap(&mut self, index: usize) -> Option<ExitStatus> {
        let slot = &mut self.slots[index];
        slot.serving = false;
        let mut child = slot.child.take()?;
        child.wait().ok()
    }

    fn signal_all(&self, signal: i32) {
        for child in self.slots.iter().filter_map(|slot| slot.child.as_ref()) {
            send_signal(child, signal);
        }
    }

    /// Step 5: sends `signal` on, waits for every process (killing those
    /// still there after `--grace` and `STOP_MARGIN`).
    fn stop_all(&mut self, notices: &Receiver<Notice>, signal: i32) {
        for slot in &mut self.slots {
            slot.restart_at = None;
        }
        self.signal_all(signal);
        let deadline = Instant::now() + self.grace + STOP_MARGIN;
        let mut killed = false;
        while self.slots.iter().any(|slot| slot.child.is_some()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match notices.recv_timeout(if killed { STOP_MARGIN } else { left }) {
                Ok(Notice::Ended(index, start)) if self.slots[index].start == start => {
                    let status = self.reap(index);
                    tracing::info!("process {index} {}", describe(status.as_ref()));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if !killed => {
                    killed = true;
                    tracing::warn!("processes still running past --grace: killing them");
                    self.signal_all(libc::SIGKILL);
                }
                Err(_) => {
                    // Killed and still not gone: do not wait forever.
                    tracing::error!("processes did not exit after SIGKILL");
                    return;
                }
            }
        }
    }
}

/// The back-off before a restart after `deaths` deaths in a row.
fn backoff(deaths: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << deaths.min(16))
        .min(LONGEST_BACKOFF)
}

fn describe(status: Option<&ExitStatus>) -> String {
    match status {
        None => "ended".into(),
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => format!("ended ({status})"),
        },
    }
}

fn send_signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is a
    // child not yet reaped (`reap` takes it out of its slot), so it cannot
    // be another process's.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The supervised side: reports to the supervisor on `REPORT_FD`.
pub struct Reporter {
    file: File,
}

impl Reporter {
    /// Takes `REPORT_FD`, marking it close-on-exec so that nothing the
    /// process starts holds the supervisor's pipe open.
    pub fn open() -> Result<Reporter> {
        // SAFETY: fcntl on an fd number; it fails with EBADF if not open.
        if unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("--supervised: no report pipe on fd 3 (it is set by --processes)");
        }
        // SAFETY: the fd is open (fcntl succeeded) and nothing else in this
        // process owns it: the supervisor handed it over for this use.
        Ok(Reporter {
            file: unsafe { File::from_raw_fd(REPORT_FD) },
        })
    }

    /// Step 2: the listeners (but the admin's: each process has its own
    /// console, on a port of its own), then `serving`. A supervisor that is
    /// gone is not an error here (step 6 stops the process).
    pub fn serving(&mut self, listening: &[(String, std::net::SocketAddr)]) {
        let mut text = String::new();
        let shared = listening
            .iter()
            .filter(|(key, _)| key != lunet_lua::admin::LISTENER_KEY);
        for (key, addr) in shared {
            text.push_str(&format!("listen {key} {addr}\n"));
        }
        text.push_str("serving\n");
        let _ = self.file.write_all(text.as_bytes());
    }
}

/// Parses `--bind-as KEY=ADDR` (step 3). The key holds `=` never: it is an
/// address and a count (`127.0.0.1:0#1`).
pub fn parse_bind_as(pairs: &[String]) -> Result<HashMap<String, std::net::SocketAddr>> {
    let mut map = HashMap::new();
    for pair in pairs {
        let Some((key, addr)) = pair.rsplit_once('=') else {
            bail!("--bind-as: expected KEY=ADDR, got '{pair}'");
        };
        let addr = addr
            .parse()
            .with_context(|| format!("--bind-as: '{addr}' is not an address"))?;
        map.insert(key.to_string(), addr);
    }
    Ok(map)
}

/// The admin address of process `index`: the port plus the index (port 0
/// stays 0: each process picks its own and logs it).
pub fn admin_address(addr: &str, index: usize) -> Result<String> {
    let parsed = lunet_core::net::parse_addr(addr)
        .with_context(|| format!("--admin {addr}: expected IP:PORT"))?;
    if parsed.port() == 0 {
        return Ok(addr.to_string());
    }
    let port = usize::from(parsed.port()) + index;
    let Ok(port) = u16::try_from(port) else {
        bail!("--admin {addr}: process {index} would need port {port}");
    };
    Ok(std::net::SocketAddr::new(parsed.ip(), port).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(7), Duration::from_secs(10));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }

    #[test]
    fn admin_ports_follow_the_process_index() {
        assert_eq!(
            admin_address("127.0.0.1:8001", 2).unwrap(),
            "127.0.0.1:8003"
        );
        assert_eq!(admin_address("127.0.0.1:0", 2).unwrap(), "127.0.0.1:0");
        assert!(admin_address("127.0.0.1:65535", 1).is_err());
        assert_eq!(
            admin_address("localhost:8001", 1).unwrap(),
            "127.0.0.1:8002"
        );
        assert!(admin_address("localhost", 1).is_err());
    }

    #[test]
    fn bind_as_keeps_the_key_whole() {
        let map = parse_bind_as(&["127.0.0.1:0#1=127.0.0.1:4100".to_string()]).unwrap();
        assert_eq!(map["127.0.0.1:0#1"], "127.0.0.1:4100".parse().unwrap());
        assert!(parse_bind_as(&["nothing".to_string()]).is_err());
        assert!(parse_bind_as(&["a=b".to_string()]).is_err());
    }
}
