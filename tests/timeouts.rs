//! `lunet.call_timeout` and the cancellable timers of `lunet.timeout`, run
//! by `lunet run tests/scripts/timeouts.lua`.

mod common;

use common::{run_script, test_script, Ran};
use std::time::Duration;

/// The script ends by returning from its main chunk, so the run exits only
/// once no session is left: a cancelled timer that still waited for its
/// hour would keep it running past this bound.
const BOUND: Duration = Duration::from_secs(30);

fn timeouts() -> Ran {
    run_script(&test_script("timeouts.lua"), &[], BOUND)
        .must_succeed("lunet run timeouts.lua failed")
}

#[test]
fn a_call_in_time_returns_its_answer() {
    let ran = timeouts();
    ran.expect("in_time", "1 two nil true");
}

#[test]
fn a_call_to_a_stuck_service_raises_timeout() {
    let ran = timeouts();
    // Stuck in lunet.wait(), and in a long lane call.
    ran.expect_parts("stuck_in_wait", "false ", &["timeouts.lua:", ": timeout"]);
    ran.expect_parts("stuck_in_lane", "false ", &["timeouts.lua:", ": timeout"]);
    ran.expect_parts("concurrent_timeout", "false ", &[": timeout"]);
    ran.expect("concurrent", "concurrent answer");
}

#[test]
fn late_answers_are_dropped() {
    let ran = timeouts();
    // The parked session answered once woken, the lane call later: the
    // caller's next calls got their own answers, not those.
    ran.expect("woken", "1");
    ran.expect("after_late", "mine");
    ran.expect("after_late_lane", "mine again");
}

#[test]
fn call_timeout_misuse_raises_at_once() {
    let ran = timeouts();
    ran.expect_parts("bad_ms", "false ", &["greater than 0"]);
    ran.expect_parts("nan_ms", "false ", &["greater than 0"]);
    ran.expect_parts("dead", "false ", &["is dead"]);
    ran.expect_parts("not_yieldable", "false ", &["cannot yield here"]);
}

#[test]
fn timers_fire_once_and_cancel_says_whether_it_stopped_them() {
    let ran = timeouts();
    ran.expect("timer_type", "table true");
    ran.expect("cancel", "true false");
    ran.expect("fired", "second,first+arg");
    ran.expect("cancel_after_fire", "false");
    ran.expect("cancel_early", "true");
    ran.expect("fired_after_early", "second,first+arg");
    ran.expect("self_cancel", "false");
    ran.expect("fired_soon", "second,first+arg,nan,negative");
}

#[test]
fn cancelled_timers_leave_no_session_waiting() {
    // `timeouts()` returning at all is the proof (see BOUND); the lines say
    // the script got that far.
    let ran = timeouts();
    ran.expect("cancelled_all", "true");
    ran.expect("cancelled_by_another_session", "true");
    ran.expect("fired_at_end", "second,first+arg,nan,negative");
    ran.expect("done", "true");
}
