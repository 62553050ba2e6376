//! Replacing the hosts of listeners (`Runtime::hold_joins`,
//! `Runtime::switch_hosts`) and the counters of `Runtime::stats`, on a
//! whole runtime.

use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc};

use super::kill::{start_runtime, stop_runtime};
use super::{FakeBody, HUNG};
use crate::event::{Event, Message};
use crate::service::{Service, Status};
use crate::{Config, Runtime};

/// The kind of the fake "exit now" signal.
const EXIT: u8 = 9;

/// A host that reports the connections it is handed (its id each time).
fn host(runtime: &Runtime, name: &str, accepted: &mpsc::Sender<u64>) -> Arc<Service> {
    let accepted = accepted.clone();
    let body = FakeBody::new(move |service, events| {
        for event in events.drain(..) {
            match event {
                Event::Accept { .. } => {
                    let _ = accepted.send(service.id());
                }
                Event::Message(message) if message.kind == EXIT => return Status::Exited,
                _ => {}
            }
        }
        Status::Alive
    });
    runtime.spawn_service(name, Box::new(body))
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("the listener stays open: no refusal")
}

#[test]
fn held_hosts_get_connections_only_once_switched_in_and_retired_ones_none_after() {
    let running = start_runtime();
    let runtime = &running.0;
    let (accepted, accepts) = mpsc::channel();
    let old = host(runtime, "old", &accepted);
    let (_, addr) = runtime.listen("127.0.0.1:0", "k#1", &old).unwrap();
    let _first = connect(addr);
    assert_eq!(accepts.recv_timeout(HUNG), Ok(old.id()));

    runtime.hold_joins();
    let new = host(runtime, "new", &accepted);
    let (_, joined) = runtime.listen("127.0.0.1:0", "k#1", &new).unwrap();
    assert_eq!(joined, addr, "the same key joins the same socket");
    // A listener only the held host has: nothing is accepted on it yet.
    let (_, fresh) = runtime.listen("127.0.0.1:0", "fresh#1", &new).unwrap();
    let _queued = connect(fresh);
    // While held, connections still go to the old host only.
    let _second = connect(addr);
    assert_eq!(accepts.recv_timeout(HUNG), Ok(old.id()));

    runtime.switch_hosts(&[old.id()]);
    // The one queued on the fresh listener is accepted at the switch.
    assert_eq!(accepts.recv_timeout(HUNG), Ok(new.id()));
    let later: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
    for _ in &later {
        assert_eq!(accepts.recv_timeout(HUNG), Ok(new.id()));
    }
    drop(accepted);
    stop_runtime(running);
}

#[test]
fn a_listener_no_host_is_left_on_is_closed_and_its_key_forgotten() {
    let running = start_runtime();
    let runtime = &running.0;
    let (accepted, accepts) = mpsc::channel();
    let only = host(runtime, "only", &accepted);
    let (_, addr) = runtime.listen("127.0.0.1:0", "k#1", &only).unwrap();
    let _first = connect(addr);
    assert_eq!(accepts.recv_timeout(HUNG), Ok(only.id()));
    runtime.switch_hosts(&[only.id()]);
    let refused = TcpStream::connect(addr).expect_err("the listener was closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The key is free again: listening with it binds a new socket.
    let (_, again) = runtime.listen("127.0.0.1:0", "k#1", &only).unwrap();
    assert_ne!(again, addr);
    let _second = connect(again);
    assert_eq!(accepts.recv_timeout(HUNG), Ok(only.id()));
    // Switching with nothing held and nothing retired changes nothing.
    runtime.switch_hosts(&[]);
    let _third = connect(again);
    assert_eq!(accepts.recv_timeout(HUNG), Ok(only.id()));
    stop_runtime(running);
}

/// Asks the counted service for what its counters said at the start of
/// its turn.
const PROBE: u8 = 2;

#[test]
fn stats_count_messages_and_turns_and_keep_the_totals_of_exited_services() {
    let running = Runtime::start(Config {
        workers: 2,
        time_turns: true,
        ..Config::default()
    })
    .expect("runtime starts");
    let runtime = &running.0;
    let (handled, counts) = mpsc::channel();
    let body = FakeBody::new(move |service, events| {
        // Counters are added after a turn: this is what earlier turns did.
        let before = service.stats().totals().messages_handled;
        let mut exit = false;
        for event in events.drain(..) {
            if let Event::Message(message) = event {
                exit |= message.kind == EXIT;
                let reply = if message.kind == PROBE { before } else { 0 };
                let _ = handled.send(reply);
            }
        }
        service.stats().publish(4096, 3);
        if exit {
            Status::Exited
        } else {
            Status::Alive
        }
    });
    let service = runtime.spawn_service("counted", Box::new(body));
    for session in 1..=50 {
        runtime
            .post_message(&service, Message::new(0, session, 1, Vec::new()))
            .unwrap();
    }
    for _ in 1..=50 {
        counts.recv_timeout(HUNG).expect("every message handled");
    }
    // The probe runs in a turn after those that handled the 50 (a message
    // that comes during a turn waits for the next one).
    runtime
        .post_message(&service, Message::new(0, 0, PROBE, Vec::new()))
        .unwrap();
    assert_eq!(counts.recv_timeout(HUNG), Ok(50));
    let live = runtime.stats();
    let listed = live
        .services
        .iter()
        .find(|s| s.id == service.id())
        .expect("listed while it lives");
    assert_eq!(listed.totals.messages_queued, 51);
    assert!(listed.totals.messages_handled >= 50);
    assert!(listed.totals.turns >= 1 && listed.totals.events >= 50);
    assert_eq!((listed.memory, listed.sessions), (4096, 3));
    assert!(listed.totals.busy_ns > 0, "time_turns measures turns");
    let worker_turns: u64 = live.workers.iter().map(|w| w.turns).sum();
    assert!(worker_turns >= listed.totals.turns);

    assert!(runtime.kill(&service, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(service.id(), HUNG));
    let after = runtime.stats();
    assert!(after.services.iter().all(|s| s.id != service.id()));
    // Its counts moved to the retired totals (the exit signal included):
    // the sums never go back.
    assert_eq!(after.retired.messages_handled, 52);
    assert_eq!(after.retired.messages_queued, 52);
    assert!(after.totals().busy_ns >= live.totals().busy_ns);
    stop_runtime(running);
}
