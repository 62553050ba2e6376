//! Memory that comes back: a Lua VM that went quiet after making garbage
//! is collected without being asked (`src/idle.rs`), so its host gives
//! back what a burst left behind.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{Steps, DEADLINE};

#[test]
fn a_quiet_vm_that_grew_is_collected() {
    let (_server, mut steps) = Steps::start(&[]);
    // Its own collector stopped: only a collection from outside frees it.
    let grown: u64 = steps
        .run(
            "collectgarbage('stop') \
             for i = 1, 40 do local garbage = ('x'):rep(100000) .. i end \
             return math.floor(collectgarbage('count'))",
        )
        .trim_start_matches("true ")
        .parse()
        .expect("a number of KiB");
    assert!(grown > 4000, "the VM holds {grown} KiB");
    let deadline = Instant::now() + DEADLINE;
    let mut now = grown;
    // A few events a second still count as quiet.
    while now > grown / 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
        now = steps
            .run("return math.floor(collectgarbage('count'))")
            .trim_start_matches("true ")
            .parse()
            .expect("a number of KiB");
    }
    assert!(
        now <= grown / 2,
        "still {now} KiB of {grown} after {DEADLINE:?}"
    );
}
