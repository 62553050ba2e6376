//! The lane (`lane.rs`): a bounded queue of blocking tasks.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use super::{FakeBody, TestPool, HUNG};
use crate::event::Event;
use crate::lane::{Lane, LanePanic, Task};
use crate::scheduler::Pool;

fn task(value: u32) -> Task {
    Box::new(move || Box::new(value) as Box<dyn std::any::Any + Send>)
}

fn lane_thread(lane: &Arc<Lane>, pool: &Arc<Pool>) -> JoinHandle<()> {
    let lane = lane.clone();
    let pool = pool.clone();
    std::thread::spawn(move || lane.run(&pool))
}

/// What a service got from the lane: (service id, ticket or None for a slot
/// notice, the task's value or None for a panic).
fn lane_event(id: u64, event: Event) -> (u64, Option<u64>, Option<u32>) {
    match event {
        Event::LaneSlot => (id, None, None),
        Event::LaneDone { ticket, result } => {
            if result.is::<LanePanic>() {
                return (id, Some(ticket), None);
            }
            let value = result.downcast::<u32>().expect("a task's own value");
            (id, Some(ticket), Some(*value))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_full_queue_hands_the_task_back_and_every_waiter_gets_a_slot_notice() {
    let pool = TestPool::start(2, 64);
    let (forward, received) = mpsc::channel();
    let owner = pool.service(FakeBody::forwarding(forward.clone()));
    let first_waiter = pool.service(FakeBody::forwarding(forward.clone()));
    let second_waiter = pool.service(FakeBody::forwarding(forward));
    // No lane thread yet: the queue (one slot) fills and stays full.
    let lane = Arc::new(Lane::new(1));
    assert!(lane.submit(&owner, 1, task(10)).is_ok());
    let handed_back = lane
        .submit(&first_waiter, 2, task(20))
        .expect_err("a full queue takes no task");
    assert_eq!(
        *handed_back().downcast::<u32>().unwrap(),
        20,
        "not the task given"
    );
    assert!(lane.submit(&second_waiter, 3, task(30)).is_err());
    assert!(lane.submit(&first_waiter, 4, task(40)).is_err());
    // The console's numbers: one queued, three waits, two services waiting.
    let counted = lane.snapshot();
    assert_eq!(
        (
            counted.queued,
            counted.waits,
            counted.waiting,
            counted.taken
        ),
        (1, 3, 2, 0)
    );

    let thread = lane_thread(&lane, &pool.pool);
    let mut got: Vec<_> = (0..3)
        .map(|_| {
            let (id, event) = received
                .recv_timeout(HUNG)
                .expect("a lane event is missing");
            lane_event(id, event)
        })
        .collect();
    got.sort();
    let mut expected = vec![
        (owner.id(), Some(1), Some(10)),
        (first_waiter.id(), None, None),
        (second_waiter.id(), None, None),
    ];
    expected.sort();
    assert_eq!(got, expected);

    // A waiter that was notified submits again, and its task runs.
    assert!(lane.submit(&first_waiter, 5, task(50)).is_ok());
    let (id, event) = received.recv_timeout(HUNG).unwrap();
    assert_eq!(
        lane_event(id, event),
        (first_waiter.id(), Some(5), Some(50))
    );
    let counted = lane.snapshot();
    assert_eq!((counted.queued, counted.waiting, counted.taken), (0, 0, 2));
    lane.stop();
    thread.join().unwrap();
}

#[test]
fn a_panicking_task_yields_lane_panic_and_the_thread_goes_on() {
    let pool = TestPool::start(1, 64);
    let (forward, received) = mpsc::channel();
    let owner = pool.service(FakeBody::forwarding(forward));
    let lane = Arc::new(Lane::new(8));
    let thread = lane_thread(&lane, &pool.pool);
    let panicking: Task = Box::new(|| panic!("a lane task panicked on purpose"));
    assert!(lane.submit(&owner, 1, panicking).is_ok());
    assert!(lane.submit(&owner, 2, task(7)).is_ok());
    let results: Vec<_> = (0..2)
        .map(|_| {
            let (id, event) = received.recv_timeout(HUNG).expect("a result is missing");
            lane_event(id, event)
        })
        .collect();
    assert_eq!(
        results,
        vec![(owner.id(), Some(1), None), (owner.id(), Some(2), Some(7))]
    );
    lane.stop();
    thread.join().unwrap();
}

#[test]
fn stop_ends_every_lane_thread() {
    let pool = TestPool::start(1, 64);
    let lane = Arc::new(Lane::new(8));
    let threads: Vec<_> = (0..3).map(|_| lane_thread(&lane, &pool.pool)).collect();
    lane.stop();
    let (joined, all_joined) = mpsc::channel();
    std::thread::spawn(move || {
        for thread in threads {
            thread.join().unwrap();
        }
        let _ = joined.send(());
    });
    all_joined
        .recv_timeout(HUNG)
        .expect("a lane thread outlived stop");
}
