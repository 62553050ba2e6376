//! The scheduler and the service state machine (`scheduler/`, `service.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use super::{tag, tagged, FakeBody, TestPool, HUNG};
use crate::event::Event;
use crate::service::{PostError, Status, DEAD, NOTIFIED};

/// Poster ids live in the high half of a tag, sequence numbers in the low.
fn poster_tag(poster: u64, sequence: u64) -> u64 {
    (poster << 32) | sequence
}

#[test]
fn events_from_many_threads_arrive_once_each_in_order_per_thread_and_never_in_parallel() {
    const POSTERS: u64 = 4;
    const RELAYED: u64 = 2;
    const EACH: u64 = 3000;
    let total = ((POSTERS + RELAYED) * EACH) as usize;
    let pool = TestPool::start(3, 8);

    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (done, delivered) = mpsc::channel();
    let target = {
        let inside = inside.clone();
        let overlaps = overlaps.clone();
        let mut seen = Vec::with_capacity(total);
        pool.service(FakeBody::new(move |_, events| {
            if inside.swap(true, Ordering::AcqRel) {
                overlaps.fetch_add(1, Ordering::Relaxed);
            }
            seen.extend(events.drain(..).map(|event| tag(&event)));
            if seen.len() == total {
                let _ = done.send(std::mem::take(&mut seen));
            }
            inside.store(false, Ordering::Release);
            Status::Alive
        }))
    };
    // Relays post from inside a turn, on a worker: the LIFO slot and local
    // deque path, where the direct posters take the injector path.
    let relays: Vec<_> = (0..RELAYED)
        .map(|relay| {
            let pool_handle = pool.pool.clone();
            let target = target.clone();
            pool.service(FakeBody::new(move |_, events| {
                for event in events.drain(..) {
                    let sequence = tag(&event);
                    let tag = poster_tag(POSTERS + relay, sequence);
                    assert!(pool_handle.post(&target, tagged(tag)));
                }
                Status::Alive
            }))
        })
        .collect();

    std::thread::scope(|scope| {
        for poster in 0..POSTERS {
            let pool = &pool.pool;
            let target = &target;
            scope.spawn(move || {
                for sequence in 0..EACH {
                    assert!(pool.post(target, tagged(poster_tag(poster, sequence))));
                }
            });
        }
        for relay in &relays {
            let pool = &pool.pool;
            scope.spawn(move || {
                for sequence in 0..EACH {
                    assert!(pool.post(relay, tagged(sequence)));
                }
            });
        }
    });

    let seen = delivered.recv_timeout(HUNG).expect("events lost: hung");
    assert_eq!(
        overlaps.load(Ordering::Relaxed),
        0,
        "a body ran on two threads at once"
    );
    let mut next: HashMap<u64, u64> = HashMap::new();
    for tag in seen {
        let (poster, sequence) = (tag >> 32, tag & 0xffff_ffff);
        let expected = next.entry(poster).or_insert(0);
        assert_eq!(
            sequence, *expected,
            "poster {poster}: out of order or twice"
        );
        *expected += 1;
    }
    assert_eq!(next.len() as u64, POSTERS + RELAYED);
    assert!(next.values().all(|&count| count == EACH), "{next:?}");
}

#[test]
fn a_turn_takes_at_most_the_budget_and_a_service_with_events_left_runs_again() {
    const BUDGET: usize = 4;
    let pool = TestPool::start(2, BUDGET);
    let (report, batches) = mpsc::channel();
    let mut sizes = Vec::new();
    let mut events_seen = 0;
    let (body, held) = FakeBody::held(move |_, events| {
        sizes.push(events.len());
        events_seen += events.drain(..).count();
        if events_seen == 1 + 3 * BUDGET + 1 {
            let _ = report.send(sizes.clone());
        }
        Status::Alive
    });
    let service = pool.service(body);
    assert!(pool.pool.post(&service, tagged(0)));
    held.wait_entered();
    for id in 1..=(3 * BUDGET as u64 + 1) {
        assert!(pool.pool.post(&service, tagged(id)));
    }
    held.release();
    let sizes = batches
        .recv_timeout(HUNG)
        .expect("events left behind: hung");
    assert_eq!(sizes, vec![1, BUDGET, BUDGET, BUDGET, 1]);
}

#[test]
fn an_event_posted_while_running_marks_the_service_notified_and_it_runs_again() {
    let pool = TestPool::start(2, 64);
    let (forward, received) = mpsc::channel();
    let mut turns = 0;
    let (body, held) = FakeBody::held(move |_, events| {
        turns += 1;
        for event in events.drain(..) {
            let _ = forward.send((turns, tag(&event)));
        }
        Status::Alive
    });
    let service = pool.service(body);
    assert!(pool.pool.post(&service, tagged(1)));
    held.wait_entered();
    assert!(pool.pool.post(&service, tagged(2)));
    assert_eq!(service.state.load(Ordering::Acquire), NOTIFIED);
    held.release();
    let first = received.recv_timeout(HUNG).unwrap();
    let second = received
        .recv_timeout(HUNG)
        .expect("the notified service never ran again");
    assert_eq!((first, second), ((1, 1), (2, 2)));
}

#[test]
fn an_exited_service_is_dead_refuses_posts_and_its_body_gets_the_leftovers() {
    let pool = TestPool::start(2, 64);
    let (bounce, bounced) = mpsc::channel();
    let (body, held) = FakeBody::held(|_, events| {
        assert_eq!(events.len(), 1);
        Status::Exited
    });
    let service = pool.service(body.bouncing_to(bounce));
    assert!(pool.pool.post(&service, tagged(0)));
    held.wait_entered();
    for id in 1..=3 {
        assert!(pool.pool.post(&service, tagged(id)));
    }
    held.release();
    assert_eq!(pool.next_exit(), service.id());
    let leftovers = bounced.recv_timeout(HUNG).expect("bounce never ran");
    assert_eq!(leftovers.iter().map(tag).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(service.state.load(Ordering::Acquire), DEAD);
    assert!(service.is_closed());
    assert!(!pool.pool.post(&service, tagged(4)));
    match pool.pool.post_checked(&service, tagged(5), true) {
        Err((event, PostError::Dead)) => assert_eq!(tag(&event), 5, "not the refused event"),
        other => panic!("expected Dead with the event back, got {:?}", other.err()),
    }
}

#[test]
fn a_panicking_body_is_stopped_and_its_worker_runs_the_next_service() {
    // One worker: if the panic killed it, nothing would run the second service.
    let pool = TestPool::start(1, 64);
    let (bounce, bounced) = mpsc::channel();
    let panicking = pool.service(
        FakeBody::new(|_, _| panic!("a fake body panicked on purpose")).bouncing_to(bounce),
    );
    let (forward, received) = mpsc::channel();
    let healthy = pool.service(FakeBody::forwarding(forward));

    assert!(pool.pool.post(&panicking, tagged(1)));
    assert_eq!(pool.next_exit(), panicking.id());
    assert!(bounced.recv_timeout(HUNG).unwrap().is_empty());
    assert!(
        !pool.pool.post(&panicking, tagged(2)),
        "a panicked service took an event"
    );

    assert!(pool.pool.post(&healthy, tagged(3)));
    let (id, event) = received
        .recv_timeout(HUNG)
        .expect("the worker died with the body");
    assert_eq!((id, tag(&event)), (healthy.id(), 3));
}

#[test]
fn two_services_messaging_each_other_do_not_starve_a_third() {
    // One worker, so the ping-pong always has the LIFO slot: only the cap on
    // LIFO turns lets the third service in.
    let pool = TestPool::start(1, 64);
    let stop = Arc::new(AtomicBool::new(false));
    let peers: Arc<[OnceLock<Arc<crate::Service>>; 2]> =
        Arc::new([OnceLock::new(), OnceLock::new()]);
    let (started, ping_pong_running) = mpsc::channel();
    let started = Mutex::new(Some(started));
    let players: Vec<_> = (0..2)
        .map(|me| {
            let pool_handle = pool.pool.clone();
            let peers = peers.clone();
            let stop = stop.clone();
            let started = started.lock().unwrap().take();
            pool.service(FakeBody::new(move |_, events| {
                if let Some(started) = &started {
                    let _ = started.send(());
                }
                for event in events.drain(..) {
                    if !stop.load(Ordering::Acquire) {
                        let other = peers[1 - me]
                            .get()
                            .expect("peers set before the first post");
                        pool_handle.post(other, tagged(tag(&event) + 1));
                    }
                }
                Status::Alive
            }))
        })
        .collect();
    for (slot, player) in peers.iter().zip(&players) {
        let _ = slot.set(player.clone());
    }
    let (third_ran, third) = mpsc::channel();
    let bystander = {
        let stop = stop.clone();
        pool.service(FakeBody::new(move |_, events| {
            events.clear();
            stop.store(true, Ordering::Release);
            let _ = third_ran.send(());
            Status::Alive
        }))
    };

    assert!(pool.pool.post(&players[0], tagged(0)));
    ping_pong_running.recv_timeout(HUNG).unwrap();
    assert!(pool.pool.post(&bystander, tagged(0)));
    third
        .recv_timeout(HUNG)
        .expect("the ping-pong starved the third service");
}

/// An `Accept` event carrying a real connection counted in `total`.
fn accept_event(service: &crate::Service, total: &Arc<AtomicUsize>) -> Event {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (stream, peer) = listener.accept().unwrap();
    Event::Accept {
        listener: 0,
        accepted: crate::Accepted {
            stream: mio::net::TcpStream::from_std(stream),
            peer,
            count: crate::ConnectionCount::new(total, &service.load_counter()),
        },
    }
}

#[test]
fn connections_left_to_an_exiting_or_dead_service_are_counted_down() {
    let pool = TestPool::start(2, 64);
    let total = Arc::new(AtomicUsize::new(0));
    let (body, held) = FakeBody::held(|_, events| {
        events.clear();
        Status::Exited
    });
    let service = pool.service(body);
    assert!(pool.pool.post(&service, tagged(0)));
    held.wait_entered();
    // Queued behind the turn that exits: they end in the leftovers.
    for _ in 0..2 {
        assert!(pool.pool.post(&service, accept_event(&service, &total)));
    }
    assert_eq!((total.load(Ordering::Relaxed), service.load()), (2, 2));
    held.release();
    assert_eq!(pool.next_exit(), service.id());
    assert_eq!((total.load(Ordering::Relaxed), service.load()), (0, 0));
    // Refused by the dead service: dropped, and counted down, at once.
    assert!(!pool.pool.post(&service, accept_event(&service, &total)));
    assert_eq!(total.load(Ordering::Relaxed), 0);
}
