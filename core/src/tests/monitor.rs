//! The monitor (`monitor.rs`), driven tick by tick with a made-up clock
//! through [`Monitor::check`], and a fake [`Interrupt`].

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::{FakeBody, HUNG};
use crate::directory::Directory;
use crate::monitor::{Monitor, Watch};
use crate::service::{Interrupt, Service, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Warn(u64),
    Kill(u64),
}

#[derive(Default)]
struct FakeInterrupt {
    calls: Mutex<Vec<Call>>,
}

impl FakeInterrupt {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Interrupt for FakeInterrupt {
    fn warn(&self, _service: &Service, running_ms: u64) {
        self.calls.lock().unwrap().push(Call::Warn(running_ms));
    }
    fn kill(&self, _service: &Service, running_ms: u64) {
        self.calls.lock().unwrap().push(Call::Kill(running_ms));
    }
}

const WARN_MS: u64 = 1_000;
const KILL_MS: u64 = 5_000;

/// A monitor over one worker slot, a service in the directory with a fake
/// interrupt, and the service's id.
fn setup(warn_ms: u64, kill_ms: u64) -> (Monitor, Arc<Watch>, Arc<FakeInterrupt>, u64) {
    let directory = Arc::new(Directory::new());
    let service = directory.insert("slow", Box::new(FakeBody::new(|_, _| Status::Alive)));
    let interrupt = Arc::new(FakeInterrupt::default());
    service.set_interrupt(interrupt.clone());
    let watch = Arc::new(Watch::new(1));
    let monitor = Monitor::new(
        watch.clone(),
        directory,
        Duration::from_millis(warn_ms),
        Duration::from_millis(kill_ms),
    );
    (monitor, watch, interrupt, service.id())
}

#[test]
fn a_long_turn_is_warned_once_and_killed_once() {
    let (mut monitor, watch, interrupt, id) = setup(WARN_MS, KILL_MS);
    watch.slot(0).enter(id, 10_000);
    monitor.check(10_000 + WARN_MS - 1);
    assert_eq!(interrupt.take(), vec![]);
    monitor.check(10_000 + WARN_MS);
    assert_eq!(interrupt.take(), vec![Call::Warn(WARN_MS)]);
    monitor.check(10_000 + KILL_MS - 1);
    assert_eq!(interrupt.take(), vec![], "warned twice in one turn");
    monitor.check(10_000 + KILL_MS);
    assert_eq!(interrupt.take(), vec![Call::Kill(KILL_MS)]);
    monitor.check(10_000 + 10 * KILL_MS);
    assert_eq!(interrupt.take(), vec![], "interrupted twice in one turn");
    assert_eq!(watch.slice_reports(), (1, 1), "the counts of /metrics");
}

#[test]
fn a_turn_first_seen_past_both_limits_is_warned_and_killed_in_one_tick() {
    let (mut monitor, watch, interrupt, id) = setup(WARN_MS, KILL_MS);
    watch.slot(0).enter(id, 0);
    monitor.check(KILL_MS + 1);
    assert_eq!(
        interrupt.take(),
        vec![Call::Warn(KILL_MS + 1), Call::Kill(KILL_MS + 1)]
    );
}

#[test]
fn each_new_turn_starts_with_a_clean_record() {
    let (mut monitor, watch, interrupt, id) = setup(WARN_MS, KILL_MS);
    watch.slot(0).enter(id, 0);
    monitor.check(KILL_MS);
    assert_eq!(interrupt.take().len(), 2);
    watch.slot(0).leave(Duration::ZERO);
    // The same service again, in a new turn, seen by the monitor only
    // once it is long: the turn counter tells it from the last one.
    watch.slot(0).enter(id, 100_000);
    monitor.check(100_000 + WARN_MS);
    assert_eq!(interrupt.take(), vec![Call::Warn(WARN_MS)]);
}

#[test]
fn short_turns_and_idle_workers_are_never_reported() {
    let (mut monitor, watch, interrupt, id) = setup(WARN_MS, KILL_MS);
    let mut now = 0;
    for _ in 0..50 {
        watch.slot(0).enter(id, now);
        monitor.check(now + WARN_MS - 1);
        watch.slot(0).leave(Duration::ZERO);
        now += WARN_MS;
        monitor.check(now + KILL_MS);
    }
    assert_eq!(interrupt.take(), vec![]);
}

#[test]
fn zero_limits_turn_the_checks_off() {
    let (mut monitor, watch, interrupt, id) = setup(0, 0);
    watch.slot(0).enter(id, 0);
    monitor.check(1_000_000);
    assert_eq!(interrupt.take(), vec![]);
}

#[test]
fn a_service_without_an_interrupt_is_logged_not_touched() {
    let directory = Arc::new(Directory::new());
    let service = directory.insert("plain", Box::new(FakeBody::new(|_, _| Status::Alive)));
    let watch = Arc::new(Watch::new(1));
    let mut monitor = Monitor::new(
        watch.clone(),
        directory,
        Duration::from_millis(WARN_MS),
        Duration::from_millis(KILL_MS),
    );
    watch.slot(0).enter(service.id(), 0);
    monitor.check(KILL_MS);
    // A slot naming a service that has gone is skipped as well.
    watch.slot(0).enter(u64::MAX, 0);
    monitor.check(KILL_MS);
}

#[test]
fn stop_ends_the_monitor_thread() {
    let (monitor, watch, _interrupt, _id) = setup(WARN_MS, KILL_MS);
    let (ended, thread_ended) = mpsc::channel();
    std::thread::spawn(move || {
        monitor.run();
        let _ = ended.send(());
    });
    watch.stop();
    thread_ended
        .recv_timeout(HUNG)
        .expect("the monitor outlived stop");
}
