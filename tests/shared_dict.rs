//! Shared dicts (`lunet.shared.dict`) through `tests/scripts/dict_ops.lua`:
//! one dict seen from every host VM, values, TTLs, LRU eviction, `incr`,
//! `add`/`replace`, `keys`/`size`/`flush`, the capacity bound, and misuse.
//!
//! Scenario commands answer with what each step returned, `show`n as
//! `type:value` (`nil`, `true`, `false` bare) and steps joined by ` | `.

mod common;

use common::{Client, End, Server, DEADLINE};
use std::collections::{BTreeSet, HashSet};

fn dict_server(args: &[&str]) -> Server {
    Server::start(&common::test_script("dict_ops.lua"), args)
}

/// Sends `command` and returns its one-line answer.
fn ask(client: &mut Client, command: &str) -> String {
    client.send(format!("{command}\n"));
    client.line()
}

/// Splits "<vm> <rest>" answers.
fn vm_and_rest(answer: &str) -> (String, String) {
    let (vm, rest) = answer
        .split_once(' ')
        .unwrap_or_else(|| panic!("expected '<vm> <value>', got {answer:?}"));
    (vm.to_string(), rest.to_string())
}

#[test]
fn a_value_set_in_one_host_is_seen_from_every_host() {
    const CONNECTIONS: usize = 16;
    let server = dict_server(&["--hosts", "4"]);
    // Every host has joined the listener once the server says it serves
    // (see `connections_right_after_listening_spread_over_hosts`).
    server.wait_log("serving ");
    // Held open together: each new connection goes to the least-loaded
    // host, so they spread over the four VMs.
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| server.client()).collect();
    let vms: Vec<String> = clients.iter_mut().map(|c| ask(c, "vm")).collect();
    let distinct: HashSet<&String> = vms.iter().collect();
    assert!(
        distinct.len() >= 2,
        "all {CONNECTIONS} connections ran in one VM: {vms:?}"
    );

    let (writer_vm, result) = vm_and_rest(&ask(&mut clients[0], "set shared greeting hello"));
    assert_eq!(result, "true nil false");
    assert_eq!(writer_vm, vms[0]);
    let mut readers_elsewhere = 0;
    for (n, client) in clients.iter_mut().enumerate() {
        let (vm, value) = vm_and_rest(&ask(client, "get shared greeting"));
        assert_eq!(vm, vms[n], "connection #{n} moved VM");
        assert_eq!(value, "string:hello", "connection #{n} in VM {vm}");
        if vm != writer_vm {
            readers_elsewhere += 1;
        }
    }
    assert!(
        readers_elsewhere > 0,
        "no reader ran outside the writer's VM"
    );

    // incr is atomic across VMs: every connection gets a distinct count.
    let counts: BTreeSet<String> = clients
        .iter_mut()
        .map(|c| vm_and_rest(&ask(c, "incr_shared shared hits")).1)
        .collect();
    let expected: BTreeSet<String> = (1..=CONNECTIONS)
        .map(|n| format!("integer:{n} nil"))
        .collect();
    assert_eq!(counts, expected);
}

#[test]
fn connections_right_after_listening_spread_over_hosts() {
    // The log says `listening on` as soon as the first host has listened,
    // and clients (this harness, bench scripts) connect then. Connections
    // accepted before the other hosts have joined the listener all land in
    // the first host and stay there for their whole life.
    const CONNECTIONS: usize = 16;
    let server = dict_server(&["--hosts", "4"]);
    let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| server.client()).collect();
    let vms: Vec<String> = clients.iter_mut().map(|c| ask(c, "vm")).collect();
    let distinct: HashSet<&String> = vms.iter().collect();
    assert!(
        distinct.len() >= 2,
        "{CONNECTIONS} connections made right after `listening on` all ran in one \
         of 4 host VMs: {vms:?}"
    );
}

#[test]
fn values_keep_their_type() {
    let server = dict_server(&[]);
    let mut client = server.client();
    let steps = [
        "true nil false",
        "integer:42",
        "true nil false",
        "float:2.5",
        "true nil false",
        "float:3.0",
        "true nil false",
        "true",
        "true nil false",
        "false",
        "true nil false",
        "true", // binary string came back byte for byte
        "nil",
        "true nil false", // set(key, nil) deletes
        "nil",
        "true",
        "nil",
        "true",
    ];
    assert_eq!(ask(&mut client, "values"), steps.join(" | "));
}

#[test]
fn entries_expire_after_their_ttl() {
    let server = dict_server(&[]);
    let mut client = server.client();
    // set ok, value seen at once, 0 < ttl <= 100, gone within the polling
    // bound, and ttl of the expired key is "not found".
    assert_eq!(
        ask(&mut client, "ttl_expiry"),
        "true string:lived true true nil string:not found"
    );
}

#[test]
fn expire_and_ttl() {
    let server = dict_server(&[]);
    let mut client = server.client();
    let steps = [
        "true nil false",
        "integer:0 nil", // no TTL
        "true nil",
        "true", // 0 < ttl <= 60000
        "true nil",
        "integer:0 nil", // expire(k, 0) persists
        "true nil",
        "true nil",
        "integer:0 nil", // expire(k) persists
        "nil string:not found",
        "nil string:not found",
        "true nil",
        "nil",
        "nil string:not found",
    ];
    assert_eq!(ask(&mut client, "expire_ttl"), steps.join(" | "));
}

#[test]
fn eviction_reports_forcible_and_takes_the_least_recently_used() {
    let server = dict_server(&[]);
    let mut client = server.client();
    // forcible, after more than 3 sets; k1 (read recently) stays, k2 (the
    // least recently used) is gone, k3 and the new key are there.
    assert_eq!(ask(&mut client, "lru"), "true true true false true true");
}

#[test]
fn incr_semantics_and_errors() {
    let server = dict_server(&[]);
    let mut client = server.client();
    let steps = [
        "nil string:not found", // missing, no init
        "integer:11 nil",       // init 10 + 1
        "integer:16 nil",
        "integer:-4 nil",
        "float:-3.5 nil", // integer + float
        "true nil false",
        "nil string:not a number",
        "true nil false",
        "nil string:not a number",
        "true nil false",
        "nil string:integer overflow",
        "true", // the value is unchanged by the failed incr
        "float:2.5 nil",
        "integer:1 nil",
        "true", // init_ttl applied
    ];
    assert_eq!(ask(&mut client, "incr"), steps.join(" | "));
}

#[test]
fn unusual_arguments_answer_as_the_mlua_methods_do() {
    // The calls the raw-stack fast paths (lua-api/src/dict_fast.rs) leave to
    // the mlua methods: number keys, string ttls, nil values, extra
    // arguments, a table or a missing key as arguments; and a second dict
    // reached through the first one's method.
    let server = dict_server(&["--hosts", "1"]);
    let mut client = server.client();
    let expected = [
        "true nil false",
        "string:seven string:seven",
        "true nil false",
        "true",
        "true nil false",
        "nil nil string:not found",
        "nil string:exists false",
        "nil string:not found false",
        "true nil false",
        "false string:runtime error: dict:incr: init must be a number, got string",
        "integer:12 nil",
        "nil string:not found",
        "true",
        "nil",
        "false string:bad argument `self` to `Dict.get`: error converting Lua table to userdata \
         (expected userdata of type 'Dict')",
        "false string:bad argument #2 to `Dict.set`: error converting Lua nil to string \
         (expected string or number)",
        "string:o",
    ];
    assert_eq!(ask(&mut client, "unusual"), expected.join(" | "));
}

#[test]
fn add_and_replace_errors() {
    let server = dict_server(&[]);
    let mut client = server.client();
    let steps = [
        // A failed add or replace also returns forcible (false), as set.
        "nil string:not found false",
        "nil",
        "true nil false",
        "nil string:exists false",
        "string:first",
        "true nil false",
        "string:third",
    ];
    assert_eq!(ask(&mut client, "add_replace"), steps.join(" | "));
}

#[test]
fn keys_size_and_flush() {
    let server = dict_server(&[]);
    let mut client = server.client();
    assert_eq!(
        ask(&mut client, "keys_size_flush"),
        "string:key1,key2,key3,key4,key5 integer:2 integer:5 true integer:0 nil integer:0"
    );
}

#[test]
fn a_full_dict_stays_within_its_capacity() {
    let server = dict_server(&[]);
    let mut client = server.client();
    // capacity, used <= capacity, fewer than 10,000 live entries, some sets
    // reported evictions, and the newest key is there.
    assert_eq!(
        ask(&mut client, "capacity_fill"),
        "integer:131072 true true true string:value-10000"
    );
}

#[test]
fn an_entry_larger_than_a_shard_is_refused() {
    let server = dict_server(&[]);
    let mut client = server.client();
    let steps = [
        "true nil false",
        "nil string:no memory false",
        "nil string:no memory false",
        "string:old", // a refused set keeps the old value
        "nil",
    ];
    assert_eq!(ask(&mut client, "no_memory"), steps.join(" | "));
}

#[test]
fn misuse_raises_logs_and_closes_only_that_connection() {
    let server = dict_server(&["--hosts", "1"]);
    let mut bystander = server.client();
    assert_eq!(ask(&mut bystander, "ping"), "pong");
    // Each command and the error it must log.
    let cases = [
        ("bad_key", "error converting Lua table to string"),
        (
            "bad_value",
            "dict:set: a value must be a string, number or boolean, got table",
        ),
        (
            "bad_incr",
            "dict:incr: the increment must be a number, got string",
        ),
        (
            "bad_name",
            "lunet.shared.dict: the name must be a string, got nil",
        ),
        (
            "bad_capacity",
            "lunet.shared.dict: capacity must be positive",
        ),
        ("bad_ttl", "error converting Lua string to f64"),
    ];
    for (command, message) in cases {
        let mut client = server.client();
        client.send(format!("{command}\n"));
        let end = client.end();
        assert!(
            matches!(end, End::Closed | End::Reset),
            "{command}: {end:?}"
        );
        server.wait_log(message);
        // The same host keeps serving the other connection.
        assert_eq!(ask(&mut bystander, "ping"), "pong", "after {command}");
    }
    // Each traceback follows its message line, which is all the loop waited
    // for: poll until the last one is in too (or the deadline), then count.
    let deadline = std::time::Instant::now() + DEADLINE;
    while server.log().matches("stack traceback").count() < cases.len()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let log = server.log();
    assert_eq!(
        log.matches("stack traceback").count(),
        cases.len(),
        "one traceback per misuse:\n{log}"
    );
    assert!(
        log.contains("dict_ops.lua:"),
        "the tracebacks name the script:\n{log}"
    );
}
