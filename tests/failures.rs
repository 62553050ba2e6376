//! Failure isolation: Lua errors, yields where Lua cannot yield, and
//! scripts that do not load. A failing session closes its own connection
//! and is logged; the server goes on.

mod common;

use common::{run_to_exit, test_script, Server};
use std::net::TcpListener;

fn failures() -> Server {
    Server::start(&test_script("failures.lua"), &[])
}

#[test]
fn handler_error_closes_only_its_connection_and_is_logged() {
    let server = failures();
    let mut bystander = server.client();
    bystander.send("before\n");
    assert_eq!(bystander.line(), "before");

    let mut failing = server.client();
    failing.send("boom\n");
    failing.end();

    let line = server.wait_log("boom requested by the test");
    assert!(
        line.contains("error") || line.contains("ERROR"),
        "not an error line: {line}"
    );
    server.wait_log("stack traceback");
    let log = server.log();
    assert!(
        log.contains("failures.lua"),
        "traceback does not name the script:\n{log}"
    );

    bystander.send("after\n");
    assert_eq!(bystander.line(), "after");
    let mut newcomer = server.client();
    newcomer.send("newcomer\n");
    assert_eq!(newcomer.line(), "newcomer");
}

#[test]
fn error_with_a_non_string_value_is_contained() {
    let server = failures();
    let mut failing = server.client();
    failing.send("boom_table\n");
    failing.end();
    let mut other = server.client();
    other.send("fine\n");
    assert_eq!(other.line(), "fine");
}

#[test]
fn error_in_a_forked_session_does_not_kill_the_handler() {
    let server = failures();
    let mut client = server.client();
    client.send("fork_boom\n");
    assert_eq!(client.line(), "handler alive");
    server.wait_log("boom in a forked session");
}

fn says_cannot_yield(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.contains("yield") && (lower.contains("c-call boundary") || lower.contains("cannot yield"))
}

#[test]
fn yield_inside_table_sort_comparator_is_an_error() {
    let server = failures();
    let mut failing = server.client();
    failing.send("sort_yield\n");
    failing.end();
    server.wait_log_where(
        "a log line saying the comparator cannot yield",
        says_cannot_yield,
    );

    let mut other = server.client();
    other.send("still serving\n");
    assert_eq!(other.line(), "still serving");
}

#[test]
fn yield_inside_gsub_callback_is_an_error() {
    let server = failures();
    let mut failing = server.client();
    failing.send("gsub_yield\n");
    failing.end();
    server.wait_log_where(
        "a log line saying the callback cannot yield",
        says_cannot_yield,
    );

    let mut other = server.client();
    other.send("still serving\n");
    assert_eq!(other.line(), "still serving");
}

#[test]
fn yield_inside_pcall_works() {
    let server = failures();
    let mut client = server.client();
    client.send("pcall_yield\n");
    assert_eq!(client.line(), "true slept");
}

#[test]
fn syntax_error_exits_non_zero_naming_the_script() {
    let (status, output) = run_to_exit(&test_script("syntax_error.lua"), &["listen=127.0.0.1:0"]);
    assert!(!status.success(), "exited with {status}\n{output}");
    assert!(
        output.contains("syntax_error.lua"),
        "the message does not name the script:\n{output}"
    );
}

#[test]
fn load_error_exits_non_zero_with_the_message() {
    let (status, output) = run_to_exit(&test_script("load_error.lua"), &["listen=127.0.0.1:0"]);
    assert!(!status.success(), "exited with {status}\n{output}");
    assert!(
        output.contains("load_error.lua"),
        "the message does not name the script:\n{output}"
    );
    assert!(
        output.contains("load failure on purpose"),
        "the message is missing:\n{output}"
    );
}

#[test]
fn missing_script_exits_non_zero_naming_it() {
    let (status, output) = run_to_exit(&test_script("does_not_exist.lua"), &["listen=127.0.0.1:0"]);
    assert!(!status.success(), "exited with {status}\n{output}");
    assert!(
        output.contains("does_not_exist.lua"),
        "the message does not name the script:\n{output}"
    );
}

#[test]
fn listen_on_a_busy_port_fails_to_start() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap();
    let busy = format!("busy={address}");
    let (status, output) = run_to_exit(&test_script("busy_port.lua"), &[busy.as_str()]);
    assert!(!status.success(), "exited with {status}\n{output}");
    assert!(
        output.contains(&address.to_string()),
        "the message does not name {address}:\n{output}"
    );
}
