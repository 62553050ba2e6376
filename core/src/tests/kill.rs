//! `Runtime::kill`, names and exits, on a whole runtime.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::{FakeBody, HUNG};
use crate::event::{Event, Message};
use crate::service::{PostError, Service, Status};
use crate::{Config, Runtime, Threads};

/// The kind of the fake "exit now" signal.
const EXIT: u8 = 9;
/// The kind of an ordinary message.
const WORK: u8 = 1;

pub(crate) fn start_runtime() -> (Runtime, Threads) {
    Runtime::start(Config {
        workers: 2,
        lane_threads: 1,
        budget: 16,
        ..Config::default()
    })
    .expect("runtime starts")
}

pub(crate) fn stop_runtime((runtime, threads): (Runtime, Threads)) {
    runtime.stop();
    threads.join();
}

/// A body that records each message's (kind, session) and exits on `EXIT`.
fn recorder(
    record: mpsc::Sender<(u8, u64)>,
) -> impl FnMut(&Arc<Service>, &mut VecDeque<Event>) -> Status + Send {
    move |_, events| {
        for event in events.drain(..) {
            if let Event::Message(message) = event {
                let _ = record.send((message.kind, message.session));
                if message.kind == EXIT {
                    return Status::Exited;
                }
            }
        }
        Status::Alive
    }
}

/// A live service that records its messages, and what it recorded.
fn spawn_recorder(runtime: &Runtime, name: &str) -> (Arc<Service>, mpsc::Receiver<(u8, u64)>) {
    let (record, recorded) = mpsc::channel();
    let body = FakeBody::new(recorder(record));
    (runtime.spawn_service(name, Box::new(body)), recorded)
}

#[test]
fn a_killed_service_refuses_later_messages_at_once_and_exits_after_what_it_had() {
    let running = start_runtime();
    let runtime = &running.0;
    let (record, recorded) = mpsc::channel();
    let (body, held) = FakeBody::held(recorder(record));
    let service = runtime.spawn_service("victim", Box::new(body));
    runtime
        .post_message(&service, Message::new(0, 1, WORK, Vec::new()))
        .expect("a live service takes a message");
    held.wait_entered();
    assert!(runtime.kill(&service, Message::signal(EXIT)));
    // The body has not run the kill yet (it waits at the gate): the refusal
    // comes from the kill itself, and the message comes back whole.
    match runtime.post_message(&service, Message::new(0, 2, WORK, vec![7; 3])) {
        Err((PostError::Dead, message)) => {
            assert_eq!((message.session, message.payload), (2, vec![7; 3]));
        }
        other => panic!("expected Dead, got {:?}", other.err().map(|e| e.0)),
    }
    assert!(service.is_closed());
    held.release();
    assert!(
        runtime.wait_exit_timeout(service.id(), HUNG),
        "never exited"
    );
    let seen: Vec<_> = recorded.try_iter().collect();
    assert_eq!(seen, vec![(WORK, 1), (EXIT, 0)]);
    assert!(
        !runtime.kill(&service, Message::signal(EXIT)),
        "killed twice"
    );
    assert!(runtime.service(service.id()).is_none());
    stop_runtime(running);
}

#[test]
fn a_name_is_taken_while_its_holder_lives_and_free_once_it_exits() {
    let running = start_runtime();
    let runtime = &running.0;
    let (first, _) = spawn_recorder(runtime, "first");
    let (second, _) = spawn_recorder(runtime, "second");
    runtime.register_name("db", first.id(), false).unwrap();
    runtime
        .register_name("db", first.id(), false)
        .expect("re-registering is fine");
    let refused = runtime.register_name("db", second.id(), true).unwrap_err();
    let crate::NameRefused::Taken(taken) = refused else {
        panic!("expected Taken, got {refused:?}");
    };
    assert_eq!(taken.owner, first.id());
    assert_eq!(
        taken.to_string(),
        format!("'db' is already the name of service :{}", first.id())
    );
    assert_eq!(runtime.query_name("db"), Some(first.id()));

    assert!(runtime.kill(&first, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(first.id(), HUNG));
    assert_eq!(runtime.query_name("db"), None);
    runtime.register_name("db", second.id(), false).unwrap();
    assert_eq!(runtime.query_name("db"), Some(second.id()));
    assert!(!runtime.wait_exit_timeout(second.id(), Duration::ZERO));
    stop_runtime(running);
}

#[test]
fn reserved_names_go_only_to_trusted_registrations_and_protection_ends_with_the_service() {
    let running = start_runtime();
    let runtime = &running.0;
    let (holder, _) = spawn_recorder(runtime, "holder");
    let (sandbox, _) = spawn_recorder(runtime, "sandbox");
    let (trusted, _) = spawn_recorder(runtime, "trusted");
    runtime
        .register_name("payments", holder.id(), true)
        .unwrap();
    runtime.protect(holder.id());
    assert!(runtime.is_protected(holder.id()));
    assert!(!runtime.is_protected(sandbox.id()));

    runtime.reserve_names(holder.id());
    assert!(runtime.kill(&holder, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(holder.id(), HUNG));
    assert!(!runtime.is_protected(holder.id()), "gone with its service");
    assert_eq!(runtime.query_name("payments"), None);
    assert_eq!(
        runtime.register_name("payments", sandbox.id(), false),
        Err(crate::NameRefused::Reserved("payments".to_string()))
    );
    runtime
        .register_name("payments", trusted.id(), true)
        .unwrap();
    assert_eq!(runtime.query_name("payments"), Some(trusted.id()));
    // The reservation is lifted once a trusted service took the name.
    assert!(runtime.kill(&trusted, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(trusted.id(), HUNG));
    runtime
        .register_name("payments", sandbox.id(), false)
        .unwrap();
    stop_runtime(running);
}

#[test]
fn listen_errors_say_what_failed() {
    let running = start_runtime();
    let runtime = &running.0;
    let (host, _) = spawn_recorder(runtime, "host");
    let error = runtime.listen("example.com:80", "a", &host).unwrap_err();
    assert!(matches!(error, crate::ListenError::Address(_)), "{error:?}");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().to_string();
    let error = runtime.listen(&busy, "b", &host).unwrap_err();
    assert!(
        matches!(error, crate::ListenError::Bind { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&busy), "{error}");
    runtime.close_listeners();
    let error = runtime.listen("127.0.0.1:0", "c", &host).unwrap_err();
    assert!(
        matches!(error, crate::ListenError::ShuttingDown),
        "{error:?}"
    );
    stop_runtime(running);
}
