//! A spawn/kill storm across threads, with live connections: threads spawn
//! hosts that join one listener, post to them, kill them and wait for them
//! to exit, while another thread posts to whatever is alive and clients
//! connect. At the end no service is left, every message a live service
//! took was delivered, and the connection count is back to zero.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::kill::{start_runtime, stop_runtime};
use super::{FakeBody, HUNG};
use crate::event::{Event, Message};
use crate::service::{PostError, Status};
use crate::{now_ms, Runtime};

const SPAWNERS: usize = 4;
const ROUNDS: usize = 100;
const MESSAGES: u64 = 20;
const CLIENTS: usize = 300;
const WORK: u8 = 1;
const EXIT: u8 = 9;
const LISTENER: &str = "storm";

/// Messages each service took (`post_message` said Ok) and got (its body
/// counted them before it exited), by service id.
#[derive(Default)]
struct Ledger {
    taken: Mutex<HashMap<u64, u64>>,
    delivered: Mutex<HashMap<u64, u64>>,
}

impl Ledger {
    fn took(&self, id: u64, count: u64) {
        *self.taken.lock().unwrap().entry(id).or_default() += count;
    }
}

/// A host: keeps every other connection it is handed (the rest it drops at
/// once), counts messages, exits on `EXIT` holding what it kept.
fn host(ledger: Arc<Ledger>, accepted: mpsc::Sender<()>) -> FakeBody {
    let mut kept = Vec::new();
    let mut keep = false;
    let mut received = 0u64;
    FakeBody::new(move |service, events| {
        for event in events.drain(..) {
            match event {
                Event::Accept {
                    accepted: connection,
                    ..
                } => {
                    keep = !keep;
                    if keep {
                        kept.push(connection);
                    }
                    let _ = accepted.send(());
                }
                Event::Message(message) if message.kind == WORK => received += 1,
                Event::Message(message) if message.kind == EXIT => {
                    ledger
                        .delivered
                        .lock()
                        .unwrap()
                        .insert(service.id(), received);
                    return Status::Exited;
                }
                _ => {}
            }
        }
        Status::Alive
    })
}

/// Returns once the reactor has applied every command queued before this
/// call (a timer added now fires after them), and its probe has exited.
fn reactor_barrier(runtime: &Runtime) {
    let (fire, fired) = mpsc::channel();
    let probe = runtime.spawn_service(
        "probe",
        Box::new(FakeBody::new(move |_, events| {
            for event in events.drain(..) {
                match event {
                    Event::Timer { id } => {
                        let _ = fire.send(id);
                    }
                    Event::Message(_) => return Status::Exited,
                    _ => {}
                }
            }
            Status::Alive
        })),
    );
    runtime.add_timer(&probe, now_ms(), 1);
    assert_eq!(
        fired.recv_timeout(HUNG),
        Ok(1),
        "the reactor never fired the timer"
    );
    assert!(runtime.kill(&probe, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(probe.id(), HUNG));
}

#[test]
fn spawn_post_kill_storm_leaves_no_service_no_message_lost_and_no_connection_counted() {
    let running = start_runtime();
    let runtime = &running.0;
    let ledger = Arc::new(Ledger::default());
    let (accepted, accepts) = mpsc::channel();

    // The anchor host binds the listener and stays until the storm is over,
    // so every connection has a host to go to.
    let anchor = runtime.spawn_service("anchor", Box::new(host(ledger.clone(), accepted.clone())));
    let (_, address) = runtime.listen("127.0.0.1:0", LISTENER, &anchor).unwrap();
    let first_client = TcpStream::connect(address).unwrap();
    accepts
        .recv_timeout(HUNG)
        .expect("the first connection was never handed over");

    let storming = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let mut spawners = Vec::new();
        for _ in 0..SPAWNERS {
            let ledger = ledger.clone();
            let accepted = accepted.clone();
            spawners.push(scope.spawn(move || {
                for _ in 0..ROUNDS {
                    let body = host(ledger.clone(), accepted.clone());
                    let service = runtime.spawn_service("storm", Box::new(body));
                    runtime
                        .listen(&address.to_string(), LISTENER, &service)
                        .expect("a host joins the listener");
                    for session in 0..MESSAGES {
                        let message = Message::new(0, session, WORK, Vec::new());
                        assert!(runtime.post_message(&service, message).is_ok());
                    }
                    ledger.took(service.id(), MESSAGES);
                    assert!(runtime.kill(&service, Message::signal(EXIT)));
                    let late = Message::new(0, 0, WORK, Vec::new());
                    assert!(matches!(
                        runtime.post_message(&service, late),
                        Err((PostError::Dead, _))
                    ));
                    assert!(
                        runtime.wait_exit_timeout(service.id(), HUNG),
                        "a host never exited"
                    );
                }
            }));
        }
        // Posts to whatever is alive; a service that is gone or killed says so.
        scope.spawn(|| {
            while storming.load(Ordering::Acquire) {
                for service in runtime.services() {
                    let message = Message::new(0, 0, WORK, Vec::new());
                    match runtime.post_message(&service, message) {
                        Ok(()) => ledger.took(service.id(), 1),
                        Err((PostError::Dead, _)) => {}
                        Err((error, _)) => panic!("unexpected {error:?}"),
                    }
                }
            }
        });
        scope.spawn(|| {
            let mut clients = Vec::new();
            // Some clients hang up while the storm goes on, the rest at its end.
            for _ in 0..CLIENTS {
                clients.push(TcpStream::connect(address).unwrap());
                if clients.len() == 3 {
                    clients.swap_remove(0);
                }
            }
        });
        for spawner in spawners {
            spawner.join().unwrap();
        }
        storming.store(false, Ordering::Release);
    });
    drop(first_client);
    assert!(runtime.kill(&anchor, Message::signal(EXIT)));
    assert!(runtime.wait_exit_timeout(anchor.id(), HUNG));

    assert!(runtime.services().is_empty(), "services left");
    let taken = ledger.taken.lock().unwrap().clone();
    let delivered = ledger.delivered.lock().unwrap().clone();
    assert_eq!(
        delivered.len(),
        SPAWNERS * ROUNDS + 1,
        "a host never reported"
    );
    for (id, count) in &taken {
        assert_eq!(delivered.get(id), Some(count), "service {id} lost messages");
    }
    // Every host is gone and no listener remains: once the reactor has
    // caught up, no connection can be counted any more.
    runtime.close_listeners();
    reactor_barrier(runtime);
    assert_eq!(runtime.connections(), 0, "the connection count leaked");
    assert!(runtime.services().is_empty());
    stop_runtime(running);
}
