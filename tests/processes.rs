//! `lunet serve --processes N`: N processes serve one address (a port 0
//! included), connections spread over them, one killed with SIGKILL is
//! started again while the others keep serving, SIGHUP reloads each, and
//! SIGTERM stops them all before the supervisor exits. A script that
//! cannot start fails the command.

mod common;

use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant};

use common::{run_to_exit, test_script, Client, Server, DEADLINE};

const PROCESSES: usize = 3;

fn start() -> Server {
    let server = Server::start(
        &test_script("processes.lua"),
        &[
            "--processes",
            &PROCESSES.to_string(),
            "--hosts",
            "1",
            "--workers",
            "1",
            "--grace",
            "2",
        ],
    );
    server.wait_log(&format!("serving with {PROCESSES} processes"));
    server
}

/// The pids of the processes as the supervisor logged their starts, by
/// index (the last start of each).
fn pids(server: &Server) -> HashMap<usize, u32> {
    let mut pids = HashMap::new();
    for line in server.log().lines() {
        let Some(rest) = line.split("process ").nth(1) else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(" started (pid ") else {
            continue;
        };
        let pid = rest.trim_end_matches(')');
        if let (Ok(index), Ok(pid)) = (index.parse(), pid.parse()) {
            pids.insert(index, pid);
        }
    }
    pids
}

/// Sends a line and returns the pid of the process that answered.
fn served_by(client: &mut Client, line: &str) -> u32 {
    client.send(format!("{line}\n"));
    let answer = client.line();
    let (pid, echoed) = answer
        .split_once(' ')
        .unwrap_or_else(|| client.fail(&format!("unexpected answer {answer:?}")));
    assert_eq!(echoed, line);
    pid.parse()
        .unwrap_or_else(|_| client.fail(&format!("no pid in {answer:?}")))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[test]
fn processes_share_the_port_and_one_killed_comes_back() {
    let server = start();
    let started = pids(&server);
    assert_eq!(started.len(), PROCESSES, "{started:?}");
    let children: HashSet<u32> = started.values().copied().collect();

    // Connections spread over every process (the kernel hashes each
    // client's port; 60 connections miss one of 3 processes with a
    // probability of about 1e-10).
    let mut clients: Vec<(Client, u32)> = (0..60)
        .map(|i| {
            let mut client = server.client();
            let pid = served_by(&mut client, &format!("hello {i}"));
            (client, pid)
        })
        .collect();
    let seen: HashSet<u32> = clients.iter().map(|(_, pid)| *pid).collect();
    assert_eq!(seen, children, "connections reached {seen:?}");

    // SIGKILL one: its connections end, the others' go on.
    let (&victim_index, &victim) = started.iter().next().unwrap();
    // SAFETY: kill(2) on a pid the supervisor has not reaped yet.
    assert_eq!(
        unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) },
        0
    );
    server.wait_log(&format!("process {victim_index} was killed by signal 9"));
    for (client, pid) in clients.iter_mut().filter(|(_, pid)| *pid != victim) {
        assert_eq!(served_by(client, "still there"), *pid);
    }
    clients.retain(|(_, pid)| *pid != victim);

    // It comes back under a new pid, and new connections reach it.
    server.wait_log(&format!("process {victim_index} (pid "));
    let restarted = pids(&server)[&victim_index];
    assert_ne!(restarted, victim);
    let deadline = Instant::now() + DEADLINE;
    let mut reached = false;
    while !reached && Instant::now() < deadline {
        let mut client = server.client();
        let pid = served_by(&mut client, "new");
        assert!(
            pid == restarted || children.contains(&pid),
            "served by {pid}, not a process of this server"
        );
        reached = pid == restarted;
    }
    assert!(reached, "no new connection reached the restarted process");

    // SIGHUP: every process reloads (its idle connections end, as at a
    // reload of one process); new connections are served.
    drop(clients);
    server.signal(libc::SIGHUP);
    for index in 0..PROCESSES {
        server.wait_log_where(&format!("process {index} reloaded"), |line| {
            line.starts_with(&format!("[process {index}] ")) && line.contains("reloaded ")
        });
    }
    let live: HashSet<u32> = pids(&server).values().copied().collect();
    for _ in 0..10 {
        let pid = served_by(&mut server.client(), "after reload");
        assert!(live.contains(&pid), "served by {pid}, not one of {live:?}");
    }
}

#[test]
fn sigterm_stops_every_process_before_the_supervisor_exits() {
    let mut server = start();
    let children: Vec<u32> = pids(&server).values().copied().collect();
    assert!(children.iter().all(|pid| alive(*pid)));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(DEADLINE);
    assert!(status.success(), "the supervisor exited with {status}");
    // Reaped by the supervisor before it exited: gone, not zombies.
    for pid in children {
        assert!(!alive(pid), "process {pid} outlived the supervisor");
    }
    let log = server.log();
    for index in 0..PROCESSES {
        assert!(
            log.contains(&format!("process {index} exited with status 0")),
            "{log}"
        );
    }
}

#[test]
fn a_process_that_dies_again_and_again_is_restarted_with_back_off() {
    let server = start();
    let index = 1;
    let mut delays = Vec::new();
    for round in 0..3 {
        let pid = pids(&server)[&index];
        // SAFETY: kill(2) on a pid the supervisor has not reaped yet.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
        let line = server.wait_log_where("a restart notice", |line| {
            line.contains(&format!("process {index} was killed by signal 9"))
                && line.contains("starting it again in ")
                && !delays.iter().any(|d: &String| line.ends_with(d.as_str()))
        });
        delays.push(
            line.rsplit("starting it again in ")
                .next()
                .unwrap()
                .to_string(),
        );
        // Wait for the new start before killing it again.
        let deadline = Instant::now() + DEADLINE;
        while pids(&server)[&index] == pid {
            assert!(Instant::now() < deadline, "round {round}: never restarted");
            thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(delays, ["100 ms", "200 ms", "400 ms"]);
}

#[test]
fn a_script_that_fails_to_start_fails_the_command() {
    let (status, log) = run_to_exit(
        &test_script("load_error.lua"),
        &["listen=127.0.0.1:0", "--processes", "2"],
    );
    assert!(!status.success(), "{log}");
    assert!(log.contains("load failure on purpose"), "{log}");
    assert!(
        log.contains("process 0 exited with status 1 before it served"),
        "{log}"
    );
    assert!(!log.contains("process 1 started"), "{log}");
}

/// `--admin IP:0`: each process opens its own console (and logs its port
/// with its prefix); the supervisor opens none.
#[test]
fn each_process_has_its_own_admin_console() {
    let server = Server::start_listeners(
        &test_script("processes.lua"),
        &[
            "--processes",
            "2",
            "--hosts",
            "1",
            "--workers",
            "1",
            "--admin",
            "127.0.0.1:0",
        ],
        // The shared port and a console for each process.
        3,
    );
    server.wait_log("serving with 2 processes");
    let mut consoles = Vec::new();
    for index in 0..2 {
        let prefix = format!("[process {index}] ");
        let line = server.wait_log_where(&format!("process {index}'s console"), |line| {
            line.starts_with(&prefix) && line.contains("admin console listening on ")
        });
        let port: u16 = line
            .rsplit(':')
            .next()
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| server.fail(&format!("no port in {line:?}")));
        consoles.push(port);
    }
    assert_ne!(consoles[0], consoles[1]);
    let log = server.log();
    let opened = log
        .lines()
        .filter(|line| line.contains("admin console listening on "))
        .count();
    assert_eq!(opened, 2, "consoles opened:\n{log}");
    for port in consoles {
        let mut console = server.client_on(port);
        console.send("stat\n");
        let first = console.line();
        assert!(first.starts_with("services "), "stat answered {first:?}");
    }
}
