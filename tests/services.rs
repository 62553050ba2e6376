//! Services (issue 4): each test runs one `tests/scripts/svc_*.lua` with
//! `lunet run`; the script drives spawned services (mostly
//! `svc_worker.lua`) and prints `key=value` lines that the test checks. The
//! scripts never decide pass or fail themselves, so a failure shows what
//! the engine did.

mod common;

use common::{run_script, test_script, Ran};
use std::time::Duration;

/// Generous: the debug build runs 200k messages in a few seconds.
const LONG: Duration = Duration::from_secs(60);

#[track_caller]
fn run(script: &str, args: &[&str]) -> Ran {
    run_script(&test_script(script), args, LONG).must_succeed(&format!("lunet run {script} failed"))
}

#[test]
fn sends_and_calls_arrive_in_order_under_load() {
    // Two senders, 100k messages each, one receiver that checks the
    // sequence of each sender; every 1,000th message a call must see
    // exactly the messages sent before it.
    let ran = run("svc_order.lua", &["count=100000"]);
    ran.expect("received", "200000");
    ran.expect("out_of_order", "0");
    ran.expect("mismatches_1", "0");
    ran.expect("mismatches_2", "0");
    ran.expect("seen_1", "100000");
    ran.expect("seen_2", "100000");
}

#[test]
fn a_service_never_runs_on_two_threads_at_once() {
    // Four senders on four workers hammer one counter (`n = n + 1` around a
    // yield-free section that counts overlapping sessions).
    let ran = run(
        "svc_counter.lua",
        &["--workers", "4", "senders=4", "each=25000"],
    );
    ran.expect("failures", "0");
    ran.expect("expected", "100000");
    ran.expect("count", "100000");
    ran.expect("overlaps", "0");
}

#[test]
fn failing_calls_raise_instead_of_hanging() {
    let ran = run("svc_errors.lua", &[]);
    // The handler raised: its message reaches the caller; the service lives.
    ran.expect_parts("handler_error", "false", &["custom failure 42"]);
    ran.expect("after_handler_error", "true pong");
    ran.expect_parts("unknown_command", "false", &["no command no-such-command"]);
    // Killed while the call was pending (the handler was sleeping).
    ran.expect("kill_live", "true");
    ran.expect_parts("pending_when_killed", "false", &["exited before answering"]);
    ran.expect("dead_after_kill", "true");
    ran.expect_parts("call_dead", "false", &["lunet.call: service :", "is dead"]);
    ran.expect("kill_dead", "false");
    // A delayed answer owed when the target called lunet.exit() (and the
    // call that made it exit) get errors.
    ran.expect_parts("exit_call", "false", &["exited before answering"]);
    ran.expect_parts("pending_when_exited", "false", &["exited before answering"]);
    ran.expect("dead_after_exit", "true");
    // Another session of the target exited while this call slept in it.
    ran.expect_parts(
        "sleeping_when_exited",
        "false",
        &["exited before answering"],
    );
    ran.expect_parts("no_dispatch", "false", &["has no lunet.dispatch function"]);
    ran.expect_parts(
        "unknown_name",
        "false",
        &["no service is named 'no-such-service'"],
    );
    ran.expect_parts("send_unknown_name", "nil", &["no-such-service"]);
    ran.expect_parts(
        "bad_handle",
        "false",
        &["expected a service handle or name"],
    );
    // Last, so that the checks above run first: docs/lua-api.md says send
    // returns nil, "dead" for a dead service.
    ran.expect("send_dead", "nil dead");
}

#[test]
fn messages_after_a_kill_or_an_exit_fail() {
    let ran = run("svc_kill_exit.lua", &["--workers", "1"]);
    ran.expect("send_ok", "true");
    ran.expect("kill", "true");
    ran.expect_parts(
        "call_after_kill",
        "false",
        &["lunet.call: service :", "is dead"],
    );
    ran.expect("send_after_kill", "nil dead");
    ran.expect_parts("call_behind_exit", "false", &["quitter", "has exited"]);
    ran.expect_parts(
        "exit_in_call",
        "false",
        &["exiter", "exited before answering"],
    );
}

#[test]
fn finalizers_that_run_while_a_vm_closes_do_not_reach_it() {
    let ran = run("svc_close_finalizer.lua", &[]);
    ran.expect("closed_false", "true");
    ran.expect("closed_true", "true");
    ran.expect("alive", "true");
}

#[test]
fn delayed_responses() {
    let ran = run("svc_response.lua", &[]);
    ran.expect("held_before_release", "nil nil nil");
    // Three held calls answered (twice each: the second use returns false).
    ran.expect("release", "3 true");
    ran.expect("answers", "released 1 released 2 released 3");
    ran.expect_parts(
        "bad_reply",
        "false",
        &["the answer could not be sent: cannot send a function to another service"],
    );
    ran.expect_parts(
        "bad_return",
        "false",
        &["the answer could not be sent: cannot send a coroutine to another service"],
    );
    ran.expect_parts(
        "response_in_send",
        "",
        &["lunet.response: this session is not answering a call"],
    );
    ran.expect_parts(
        "response_in_main",
        "false",
        &["lunet.response: this session is not answering a call"],
    );
    ran.expect("ping", "pong");
}

#[test]
fn names() {
    let ran = run("svc_names.lua", &[]);
    ran.expect("query_unknown", "nil");
    ran.expect("register", "true");
    ran.expect("query_self", "true");
    ran.expect(
        "register_empty",
        "false lunet.register: the name must not be empty",
    );
    ran.expect("query_spawned", "true");
    ran.expect("call_by_name", "true");
    ran.expect_parts("send_by_name", "true", &[]);
    ran.expect("notes", "1");
    ran.expect_parts(
        "duplicate_spawn",
        "false",
        &["lunet.spawn: 'worker' is already the name of service :"],
    );
    ran.expect("still_first", "true");
    ran.expect_parts(
        "register_taken_by_other",
        "true false",
        &["lunet.register: 'worker' is already the name of service :"],
    );
    ran.expect("kill_by_name", "true");
    ran.expect("query_after_exit", "nil");
    ran.expect_parts("reuse", "true second", &[]);
}

#[test]
fn queue_stops_sessions_interleaving_and_wait_wakeup() {
    let ran = run("svc_queue.lua", &[]);
    // Without a queue the three sessions interleave at their sleep...
    ran.expect("open_results", "1 2 3");
    ran.expect("open_trace", "enter1 enter2 enter3 leave1 leave2 leave3");
    // ...with one they run one at a time, in arrival order.
    ran.expect("guarded_results", "1 2 3");
    ran.expect("guarded_trace", "enter1 leave1 enter2 leave2 enter3 leave3");
    // An error inside the section reaches the caller and frees the section.
    let errors = ran.value("error_results");
    if errors.matches("failed inside the section").count() != 3 {
        ran.fail("error_results: expected three errors");
    }
    ran.expect("after_error", "1 2 3");
    ran.expect("reentrant", "inner1 inner2 inner3");
    ran.expect("wakeup_not_waiting", "false");
    ran.expect("wakeup_waiting", "true");
    ran.expect("wakeup_twice", "false");
    ran.expect("woken", "0");
}

#[test]
fn codec_round_trips_every_type_and_refuses_the_rest() {
    let ran = run("svc_codec.lua", &[]);
    for key in [
        "nothing",
        "nils",
        "booleans",
        "integers",
        "floats",
        "nan",
        "strings",
        "big_string",
        "array",
        "map",
        "mixed",
        "nested",
        "holes_after_array",
        "shared_reference",
        "integer_float_keys",
        "depth_32",
    ] {
        ran.expect(key, "ok");
    }
    let refused = [
        ("depth_33_call", "cannot send tables nested deeper than 32"),
        ("depth_33_send", "cannot send tables nested deeper than 32"),
        ("function_call", "cannot send a function to another service"),
        ("function_send", "cannot send a function to another service"),
        (
            "coroutine_send",
            "cannot send a coroutine to another service",
        ),
        ("userdata_send", "cannot send a userdata to another service"),
        ("file_send", "cannot send a userdata to another service"),
        (
            "cycle_send",
            "cannot send a table that contains itself (a cycle)",
        ),
        (
            "indirect_cycle_call",
            "cannot send a table that contains itself (a cycle)",
        ),
        (
            "function_in_table",
            "cannot send a function to another service",
        ),
        (
            "function_as_key",
            "cannot send a function to another service",
        ),
        ("spawn_args", "cannot send a function to another service"),
    ];
    for (key, message) in refused {
        ran.expect_parts(key, "false", &[message]);
    }
    ran.expect("after_errors", "pong");
}

#[test]
fn monitor_interrupts_runaway_slices_while_others_answer() {
    let ran = run(
        "svc_monitor.lua",
        &["--slice-kill", "1", "--slice-warn", "0.3", "--workers", "2"],
    );
    let interrupted = "the slice ran longer than --slice-kill and was interrupted";
    ran.expect_parts("spin", "false", &[interrupted]);
    ran.expect("spin_other_answered", "true");
    ran.expect("spin_then_ping", "pong");
    // pcall in a loop cannot swallow the interruption.
    ran.expect_parts("pcall_spin", "false", &[interrupted]);
    ran.expect("pcall_spin_other_answered", "true");
    ran.expect("pcall_spin_then_ping", "pong");
    ran.expect_log("a slice has run for");
    ran.expect_log("long slice is here: stack traceback:");
    ran.expect_log("svc_worker.lua:");
}

#[test]
fn memory_limit_fails_the_allocation_not_the_service() {
    let ran = run("svc_memory.lua", &[]);
    ran.expect_parts("small_alloc", "true", &[]);
    ran.expect_parts("big_alloc", "false", &["not enough memory"]);
    ran.expect("after_big_alloc", "true pong");
    ran.expect_parts("small_alloc_again", "true", &[]);
    ran.expect_parts("unlimited_big_alloc", "true", &[]);
    ran.expect_parts("big_message", "false", &["not enough memory"]);
    ran.expect("after_big_message", "true pong");
}

#[test]
fn what_is_made_on_first_use_looks_as_if_it_had_always_been_there() {
    let ran = run("svc_first_use.lua", &[]);
    for label in ["trusted", "sandboxed"] {
        for (key, expected) in [
            // Not opened until named...
            ("table_before", "nil"),
            // ...then opened and kept as a plain global.
            ("table_type", "table"),
            ("table_kept", "true"),
            ("require_math", "true"),
            ("coroutine_sleep", "slept"),
            ("pairs_lunet", "true"),
            ("json_encode", "[1,2]"),
            ("strict_set", "true"),
            ("strict_utf8", "table"),
            ("strict_os", "table"),
            ("strict_undeclared", "true"),
        ] {
            assert_eq!(
                ran.value(&format!("{label}.{key}")),
                expected,
                "{label}.{key}; log:\n{}",
                ran.log
            );
        }
    }
}

#[test]
fn spawned_services_are_sandboxed_unless_trusted() {
    let ran = run("svc_sandbox.lua", &[]);
    // (key, expected value, or a prefix when it ends with ':'); every
    // mismatch is reported at once.
    let mut checks: Vec<(String, &str)> = Vec::new();
    for key in [
        "os_execute",
        "os_exit",
        "os_getenv",
        "os_remove",
        "io",
        "debug",
        "string_dump",
        "dofile",
        "loadfile",
    ] {
        checks.push((format!("sandboxed.{key}"), "nil"));
    }
    for (key, expected) in [
        ("os_time", "function"),
        ("load_text", "42"),
        // Bytecode made by the trusted main script (string.dump) and sent
        // as a string must not run: `load` is text-only.
        ("load_binary", "refused:"),
        ("load_mode_b", "raised:"),
        ("require_io", "raised:"),
        ("require_lunet", "table"),
        ("string_metatable", "boolean"),
        ("string_method", "ABC"),
    ] {
        checks.push((format!("sandboxed.{key}"), expected));
    }
    for (key, expected) in [
        ("os_execute", "function"),
        ("os_getenv", "function"),
        ("io", "table"),
        ("debug", "table"),
        ("string_dump", "function"),
        ("dofile", "function"),
        ("require_io", "table"),
        ("string_metatable", "table"),
        ("load_binary", "ran:42"),
    ] {
        checks.push((format!("trusted.{key}"), expected));
    }
    checks.push(("main.os_execute".to_string(), "function"));

    let mismatches: Vec<String> = checks
        .iter()
        .filter_map(|(key, expected)| {
            let value = ran.value(key);
            let matches = if expected.ends_with(':') {
                value.starts_with(expected)
            } else {
                value == *expected
            };
            (!matches).then(|| format!("{key}: expected {expected:?}, got {value:?}"))
        })
        .collect();
    if !mismatches.is_empty() {
        ran.fail(&mismatches.join("\n"));
    }
    ran.expect_parts(
        "sandboxed.require_io",
        "raised:",
        &["not available in a sandboxed service"],
    );
}

#[test]
fn mailbox_cap_makes_send_return_overloaded() {
    let ran = run("svc_mailbox.lua", &[]);
    // The target is inside one long slice: 4 (its cap) are queued, the rest
    // refused.
    ran.expect(
        "sends",
        "ok ok ok ok overloaded overloaded overloaded overloaded overloaded overloaded",
    );
    ran.expect_parts("call_overloaded", "false", &["is overloaded"]);
    ran.expect("notes_after_release", "true 4");
    ran.expect_parts("send_after_release", "true", &[]);
    // Without a cap nothing is refused, and the long mailbox is logged.
    ran.expect("unbounded_refused", "0");
    ran.expect("unbounded_notes", "1500");
    ran.expect_log("mailbox is long: 1024 events queued");
}

#[test]
fn spawn_runs_the_script_with_its_arguments_and_reports_failures() {
    let ran = run("svc_spawn.lua", &[]);
    ran.expect("self", "1");
    ran.expect("args_and_self", "first true true");
    ran.expect_parts("options_args", "second", &[]);
    ran.expect_parts(
        "syntax_error",
        "false",
        &["svc_bad_syntax.lua:5:", "near 'end'"],
    );
    ran.expect_parts(
        "main_error",
        "false",
        &["svc_bad_main.lua:3:", "the main chunk refused to start"],
    );
    ran.expect_parts(
        "missing",
        "false",
        &["cannot find script 'svc_no_such_script.lua'"],
    );
    ran.expect_parts("no_script", "false", &["a script path is required"]);
    ran.expect_parts("bad_argument", "false", &["expected a script path"]);
    ran.expect("still_alive", "pong");
}

#[test]
fn run_exits_zero_when_the_first_service_exits() {
    // lunet.exit() ends the process although a spawned service lives on.
    let ran = run("svc_run_exit.lua", &["word=bye"]);
    ran.expect_log("stdout: exiting bye");
    if ran.log.contains("not reached") {
        ran.fail("lunet.exit() returned to its caller");
    }
}

#[test]
fn run_reports_a_failing_main_chunk_with_status_1() {
    let ran = run_script(&test_script("svc_run_error.lua"), &[], LONG);
    assert_eq!(ran.status.code(), Some(1), "{}", ran.log);
    ran.expect_log("startup failed on purpose");

    let ran = run_script(&test_script("svc_bad_syntax.lua"), &[], LONG);
    assert_eq!(ran.status.code(), Some(1), "{}", ran.log);
    ran.expect_log("svc_bad_syntax.lua:5:");
}
