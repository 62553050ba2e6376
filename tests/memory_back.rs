//! Memory that comes back: a Lua VM that went quiet after making garbage
//! is collected without being asked (`src/idle.rs`), so its host gives
//! back what a burst left behind.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{Steps, DEADLINE};

/// Lua memory of the steps' VM, in KiB.
fn kib(steps: &mut Steps, lua: &str) -> u64 {
    steps
        .run(lua)
        .trim_start_matches("true ")
        .parse()
        .expect("a number of KiB")
}

/// Makes about 4 MB of garbage with the VM's own collector stopped (only a
/// collection from outside frees it); returns what the VM then holds.
fn grow(steps: &mut Steps) -> u64 {
    let grown = kib(
        steps,
        "collectgarbage('stop') \
         for i = 1, 40 do local garbage = ('x'):rep(100000) .. i end \
         return math.floor(collectgarbage('count'))",
    );
    assert!(grown > 4000, "the VM holds {grown} KiB");
    grown
}

/// Waits (a few events a second still count as quiet) until the VM holds
/// at most half of `grown`; fails the test past [`DEADLINE`].
fn wait_until_collected(steps: &mut Steps, grown: u64) {
    let deadline = Instant::now() + DEADLINE;
    let mut now = grown;
    while now > grown / 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        now = kib(steps, "return math.floor(collectgarbage('count'))");
    }
    assert!(
        now <= grown / 2,
        "still {now} KiB of {grown} after {DEADLINE:?}"
    );
}

#[test]
fn a_quiet_vm_that_grew_is_collected() {
    let (_server, mut steps) = Steps::start(&[]);
    let grown = grow(&mut steps);
    wait_until_collected(&mut steps, grown);
}

/// The look after a collection finds the VM busy with a new burst: what it
/// holds then is garbage, not what survived the collection, so it is
/// collected again once it goes quiet.
#[test]
fn a_vm_busy_again_after_its_collection_is_collected_again_when_quiet() {
    let (_server, mut steps) = Steps::start(&[]);
    let grown = grow(&mut steps);
    wait_until_collected(&mut steps, grown);
    // Seen within 0.5 s of the collection; the next look comes at most 2 s
    // after the one that asked for it: busy until past it.
    grow(&mut steps);
    let busy_until = Instant::now() + Duration::from_secs(3);
    let mut steps_run = 0;
    while Instant::now() < busy_until {
        steps.expect("return 1", "true 1");
        steps_run += 1;
    }
    assert!(steps_run > 100, "only {steps_run} steps: not busy");
    // With its collector stopped, the steps' garbage is there too.
    let grown = kib(&mut steps, "return math.floor(collectgarbage('count'))");
    wait_until_collected(&mut steps, grown);
}
