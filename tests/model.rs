//! The runtime model (issue 10): modules, Subs with CPS, events, groups,
//! state and storage, and the bounds of services applied to runtimes. Each
//! test runs a `tests/scripts/model_*.lua` with `lunet run --modules
//! tests/modules`; the scripts print `key=value` lines the test checks and
//! never decide pass or fail themselves. The console's `reload MODULE` and
//! the `modules` column of `list` are tested against `lunet serve`.

mod common;

use common::{run_script, test_script, Client, Ran, Server, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modules")
}

/// Runs `script` with the test modules and `args`; it must succeed.
#[track_caller]
fn run(script: &str, args: &[&str]) -> Ran {
    let modules = modules_dir().display().to_string();
    let mut all = vec!["--modules", modules.as_str()];
    all.extend_from_slice(args);
    run_script(&test_script(script), &all, LONG).must_succeed(&format!("lunet run {script} failed"))
}

#[test]
fn subs_run_in_the_runtime_with_ctx_and_carry_continuations() {
    let ran = run("model_subs.lua", &[]);
    ran.expect("reference", "lunet.sub(t.echo@1.0:echo) t.echo 1.0 echo");
    // ctx.source is the caller; the values come back as they went.
    ran.expect("echo", "true x 2");
    ran.expect("by_name", "42");
    // A module's dependency runs in the same runtime, in an environment of
    // its own.
    ran.expect("dependency", "util's own");
    ran.expect("globals", "true true true");
    ran.expect_parts("fail", "false", &["failed on purpose: why"]);
    ran.expect("alive_after_fail", "2");
    ran.expect("sent", "1,2,3,4,5");
    // CPS: the answer carries the continuation, run in another runtime.
    ran.expect("continuation", "true lunet.sub(t.cps@2.0:done) 42 true");
    ran.expect("run_continuation", "true");
    ran.expect("continuation_ran", "42 caller true");
    ran.expect("not_in_the_first", "true");
    ran.expect("returned_reference", "true lunet.sub(t.cps@2.0:result)");
    ran.expect("reference_rawequal", "false");
    ran.expect("sent_reference", "true");
    ran.expect("early_call", "hello after loading true");
    ran.expect("early_attach", "fired");
    ran.expect("version_known", "2.0");
    ran.expect("version_given", "3.1");
}

#[test]
fn sub_calls_that_cannot_run_raise_at_the_caller_and_cost_the_receiver_a_log_line() {
    let ran = run("model_refusals.lua", &[]);
    ran.expect_parts(
        "unknown_module",
        "false",
        &[
            "Sub t.nowhere@1.0:x",
            "does not run module t.nowhere",
            "t.echo@1.0",
        ],
    );
    // Both versions are named.
    ran.expect_parts(
        "wrong_version",
        "false",
        &["Sub t.echo@9.9:echo", "runs t.echo@1.0, not t.echo@9.9"],
    );
    ran.expect_parts(
        "unknown_sub",
        "false",
        &["Sub t.echo@1.0:nothing", "which has no Sub 'nothing'"],
    );
    ran.expect_parts("not_a_runtime", "false", &["runs no modules"]);
    ran.expect_parts(
        "function_argument",
        "false",
        &["cannot send a function to another service"],
    );
    ran.expect_parts("coroutine_argument", "false", &["cannot send a coroutine"]);
    ran.expect_parts(
        "answer_not_copyable",
        "false",
        &["the answer could not be sent: cannot send a function"],
    );
    ran.expect("send_refused", "true");
    ran.expect_parts(
        "sub_unknown_name",
        "false",
        &["lunet.sub: module t.echo@1.0 has no Sub 'nothing'"],
    );
    ran.expect_parts(
        "sub_unknown_module",
        "false",
        &["module t.nowhere is not loaded in this process: give its version"],
    );
    ran.expect_parts("sub_bad_module_name", "false", &["a module name must be"]);
    ran.expect_parts("sub_bad_version", "false", &["a version must be"]);
    ran.expect_parts(
        "function_still_refused",
        "false",
        &["cannot send a function"],
    );
    ran.expect("alive", "true 8");
    // The receiver logged each refusal, the one of the send included.
    let refusals = ran
        .log
        .lines()
        .filter(|l| l.contains("refused a Sub from :1"))
        .count();
    assert_eq!(refusals, 5, "{}", ran.log);
    ran.expect_log("refused a Sub from :1: Sub t.echo@1.0:nothing");
}

#[test]
fn modules_load_with_their_dependencies_and_a_bad_one_fails_the_spawn() {
    let ran = run("model_modules.lua", &[]);
    ran.expect_parts(
        "unknown",
        "runtime error: module t.nowhere not found: searched ",
        &["tests/modules/t/nowhere.lua"],
    );
    ran.expect_parts(
        "cycle",
        "runtime error: cyclic dependency: t.a -> t.b -> t.c -> t.a",
        &[],
    );
    ran.expect_parts(
        "missing_dependency",
        "runtime error: module t.nowhere not found",
        &["(needed by t.needs_missing -> t.nowhere)"],
    );
    ran.expect_parts(
        "syntax",
        "runtime error: module t.syntax does not compile",
        &["tests/modules/t/syntax.lua:3:"],
    );
    // The module's own error, with its traceback.
    ran.expect_parts(
        "raises",
        "runtime error: ",
        &["tests/modules/t/raises.lua:3: the module refused to load"],
    );
    ran.expect("raises_traceback", "true");
    ran.expect_parts(
        "upvalue",
        "runtime error: M.sub('leaks'): the function captures the upvalue 'secret'",
        &[],
    );
    ran.expect_parts(
        "misnamed",
        "runtime error: ",
        &["lunet.module: the file of module t.misnamed declares name = t.other"],
    );
    ran.expect_parts(
        "no_version",
        "runtime error: ",
        &["version must be a string"],
    );
    // require reaches only what a module declared, trusted or not.
    ran.expect_parts(
        "undeclared",
        "runtime error: ",
        &["require 't.echo': module t.undeclared does not declare it"],
    );
    ran.expect_parts(
        "undeclared_trusted",
        "runtime error: ",
        &["require 't.echo': module t.undeclared does not declare it"],
    );
    ran.expect_parts("bad_name", "lunet.spawn: a module name must be", &[]);
    ran.expect(
        "not_a_list",
        "lunet.spawn: modules must be a list of module names, got string",
    );
    ran.expect(
        "nothing",
        "lunet.spawn: a script path is required (or modules, for a runtime)",
    );
    ran.expect("two", "ok");
    ran.expect_parts("module_outside", "lunet.module: call it once", &[]);
}

#[test]
fn a_module_is_compiled_once_per_process() {
    // The file changes on disk after the first runtime loaded it: the next
    // spawn still runs the code compiled then (until `reload MODULE`).
    let dir = TempDir::new("model-once");
    let module_dir = dir.0.join("modules/once");
    std::fs::create_dir_all(&module_dir).unwrap();
    let version = |text: &str| {
        format!(
            "local M = lunet.module {{ name = \"once.v\", version = \"1\" }}\n\
             M.sub(\"text\", function(ctx) return \"{text}\" end)\nreturn M\n"
        )
    };
    std::fs::write(module_dir.join("v.lua"), version("first")).unwrap();
    let script = dir.0.join("once.lua");
    let file = module_dir.join("v.lua").display().to_string();
    std::fs::write(
        &script,
        format!(
            "local lunet = require 'lunet'\n\
             local a = lunet.spawn {{ modules = {{ 'once.v' }} }}\n\
             print('first=' .. lunet.call(a, lunet.sub('once.v', 'text')))\n\
             assert(lunet.fs.write({file:?}, {second:?}))\n\
             local b = lunet.spawn {{ modules = {{ 'once.v' }} }}\n\
             print('second=' .. lunet.call(b, lunet.sub('once.v', 'text')))\n\
             lunet.exit()\n",
            second = version("second"),
        ),
    )
    .unwrap();
    let ran = run_script(&script, &[], LONG).must_succeed("once.lua failed");
    ran.expect("first", "first");
    ran.expect("second", "first");
}

#[test]
fn events_reach_local_black_box_and_group_attachments_until_either_side_exits() {
    let ran = run("model_events.lua", &[]);
    ran.expect("attach_here", "true");
    ran.expect_parts(
        "attach_unknown",
        "false",
        &["does not define the event 't.counter.nothing' (it defines t.counter.tick)"],
    );
    ran.expect("attach_outside", "true");
    ran.expect_parts(
        "attach_outside_unknown",
        "false",
        &[
            "lunet.attach: service :",
            "does not define the event 't.counter.nope'",
        ],
    );
    ran.expect_parts("attach_plain_service", "false", &["(it defines none)"]);
    ran.expect_parts("attach_dead", "false", &["service :999999 is dead"]);
    // One local attachment and one from outside.
    ran.expect("fired", "2");
    ran.expect("delivered", "1 true 1 true");
    ran.expect("local", "1");
    ran.expect("with_watcher", "3");
    ran.expect("watcher_saw", "2");
    // The watcher exited: the first fire finds it dead and drops it.
    ran.expect("after_watcher_exit", "2");
    ran.expect("after_watcher_exit_again", "2");
    // A group's watch reaches a member that joined after it, and only
    // members.
    ran.expect("group_attach", "true");
    ran.expect("member_fires", "1");
    ran.expect("group_delivered", "true");
    ran.expect("non_member", "1");
    ran.expect("joined_member", "true");
    ran.expect_parts(
        "fire_unsendable",
        "false",
        &["lunet.fire: cannot send a function"],
    );
    ran.expect_parts(
        "fire_undefined",
        "false",
        &["lunet.fire: this runtime does not define the event 't.counter.tick'"],
    );
}

#[test]
fn groups_send_to_all_call_one_and_lose_members_that_exit() {
    let ran = run("model_groups.lua", &["--workers", "2"]);
    ran.expect("tostring", "lunet.group(workers)");
    ran.expect("empty", "0");
    ran.expect_parts("call_empty", "false", &["group 'workers' has no members"]);
    ran.expect("members", "3 true true");
    ran.expect("same_group", "3");
    ran.expect("send", "3");
    ran.expect("send_reached", "3");
    ran.expect("call_answered_by_caller", "true 1");
    // 60 calls, each to the less loaded of two members drawn at random:
    // every member answers some.
    ran.expect("call_spread", "3");
    ran.expect("join_self", "true false");
    ran.expect("after_join", "4");
    ran.expect("leave_self", "true false");
    ran.expect("after_exit", "2");
    ran.expect_parts("join_dead", "false", &["g:join: service :999999 is dead"]);
    ran.expect_parts(
        "bad_name",
        "false",
        &["lunet.group: the name must be a string"],
    );
    ran.expect_parts(
        "send_function",
        "false",
        &["g:send: cannot send a function"],
    );
}

#[test]
fn state_is_declared_bounded_saved_and_read_back_by_name() {
    let data = TempDir::new("model-state");
    let data_arg = data.0.display().to_string();
    let ran = run(
        "model_state.lua",
        &["--data", data_arg.as_str(), "phase=save"],
    );
    ran.expect("set", "true");
    ran.expect("get", "alice");
    ran.expect("query", "ann b bob nil");
    ran.expect("query_all", "4");
    ran.expect("same", "true");
    ran.expect_parts(
        "storage_undeclared",
        "false",
        &["lunet.storage: not permitted: spawned without storage"],
    );
    ran.expect_parts("not_copyable", "false", &["cannot send a function"]);
    ran.expect_parts("function_value", "false", &["cannot send a function"]);
    ran.expect("save", "true");
    ran.expect("nameless_get", "1");
    ran.expect_parts(
        "nameless_save",
        "false",
        &["state:save: this runtime has no name to save its state under"],
    );
    ran.expect_parts(
        "undeclared_sandbox",
        "false",
        &["lunet.state: not permitted: spawned without state"],
    );
    ran.expect_parts(
        "undeclared_trusted",
        "false",
        &["lunet.state: this runtime was spawned without state (spawn it with state = true)"],
    );
    ran.expect_parts("undeclared_main", "false", &["spawned without state"]);
    ran.expect("caps_state", "true 1");
    ran.expect(
        "grant",
        "false lunet.spawn: cannot grant state: this service was spawned without it",
    );
    ran.expect_parts(
        "over_quota",
        "4 ",
        &["state:set: over quota: the runtime's state would pass its memory bound"],
    );
    assert!(data.0.join("state.sqlite").is_file());

    // A runtime spawned later with the same name starts with what was
    // saved (not with what changed after the save).
    let ran = run(
        "model_state.lua",
        &["--data", data_arg.as_str(), "phase=load"],
    );
    ran.expect("restored", "alice");
    ran.expect("restored_query", "ann a bob");
    ran.expect("restored_reference", "lunet.sub(t.state@1:get)");
    ran.expect("restored_gone", "nil");
    ran.expect("other_name", "nil");
}

#[test]
fn storage_is_a_database_of_the_runtime_whose_every_call_yields() {
    let data = TempDir::new("model-storage");
    let data_arg = data.0.display().to_string();
    let ran = run("model_storage.lua", &["--data", data_arg.as_str()]);
    ran.expect("put", "1 1 nil");
    ran.expect("get", "one");
    // A storage call where the coroutine cannot yield raises.
    ran.expect_parts(
        "yields",
        "false",
        &["storage:query has to wait, but this coroutine cannot yield here"],
    );
    ran.expect_parts(
        "state_undeclared",
        "false",
        &["lunet.state: not permitted: spawned without state"],
    );
    ran.expect("named_put", "1 1 nil");
    ran.expect("separate", "nil nil");
    ran.expect_parts(
        "unnamed_true",
        "false",
        &["storage = true keeps the database in <name>.sqlite"],
    );
    ran.expect_parts(
        "bad_storage",
        "false",
        &["storage must be a file name or true, got integer"],
    );
    for outside in ["outside_storage", "absolute_storage"] {
        ran.expect_parts(
            outside,
            "false",
            &["must name a file in the data directory (a relative path without '..')"],
        );
    }
    ran.expect("nested_storage", "1 1 nil");
    ran.expect_parts(
        "undeclared",
        "false",
        &["lunet.storage: not permitted: spawned without storage"],
    );
    ran.expect_parts(
        "undeclared_main",
        "false",
        &["lunet.storage: this runtime was spawned without storage"],
    );
    ran.expect("scripted", "1");
    ran.expect_parts("scripted_sub", "false", &["runs no modules"]);
    for file in [
        "kept.sqlite",
        "archive.sqlite",
        "scripted.sqlite",
        "deeper/n.sqlite",
    ] {
        assert!(data.0.join(file).is_file(), "{file} in the data directory");
    }
}

#[test]
fn mailbox_memory_and_slice_bounds_apply_to_runtimes() {
    let ran = run(
        "model_limits.lua",
        &["--slice-kill", "0.5", "--slice-warn", "0"],
    );
    ran.expect("mailbox", "ok ok overloaded overloaded overloaded");
    ran.expect_parts("mailbox_call", "false", &["is overloaded"]);
    ran.expect("mailbox_after", "1,2");
    ran.expect_parts(
        "early_full",
        "false",
        &["is still loading its modules and keeps no more than 10000 messages"],
    );
    ran.expect("early_kept", "10001");
    ran.expect_parts("memory", "false", &["not enough memory"]);
    ran.expect("memory_alive", "1000");
    ran.expect_parts(
        "slice",
        "false",
        &["the slice ran longer than --slice-kill and was interrupted"],
    );
    ran.expect("slice_alive", "10");
}

/// `lunet serve` of `model_serve.lua` with an admin console, and a temp
/// copy of the module it reloads.
struct Reloading {
    server: Server,
    admin: u16,
    module: PathBuf,
    _dir: TempDir,
}

fn module_text(version: &str, word: &str, extra: &str) -> String {
    format!(
        "local M = lunet.module {{ name = \"live.greeter\", version = \"{version}\" }}\n\
         {extra}\n\
         M.sub(\"greet\", function(ctx) return \"{word}\" end)\n\
         M.sub(\"remember\", function(ctx, v) return ctx.state:set(\"v\", v) end)\n\
         M.sub(\"recall\", function(ctx) return ctx.state:get(\"v\") end)\n\
         return M\n"
    )
}

fn start_reloading() -> Reloading {
    let dir = TempDir::new("model-reload");
    let module_dir = dir.0.join("live");
    std::fs::create_dir_all(&module_dir).unwrap();
    let module = module_dir.join("greeter.lua");
    std::fs::write(&module, module_text("1", "one", "")).unwrap();
    let modules = dir.0.display().to_string();
    let server = Server::start_listeners(
        &test_script("model_serve.lua"),
        &[
            "--admin",
            "127.0.0.1:0",
            "--hosts",
            "1",
            "--modules",
            modules.as_str(),
        ],
        2,
    );
    let line = server.wait_log("admin console listening on ");
    let admin = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| server.fail("no admin port in the log"));
    server.wait_log("serving ");
    Reloading {
        server,
        admin,
        module,
        _dir: dir,
    }
}

impl Reloading {
    /// A console command's lines (before `<CMD ...>`) and whether it was OK.
    fn console(&self, command: &str) -> (Vec<String>, bool) {
        let mut client = self.server.client_on(self.admin);
        client.send(format!("{command}\n"));
        let mut lines = Vec::new();
        loop {
            match client.line().as_str() {
                "<CMD OK>" => return (lines, true),
                "<CMD Error>" => return (lines, false),
                line => lines.push(line.to_string()),
            }
        }
    }

    fn host(&self) -> Client {
        let port = self
            .server
            .ports()
            .iter()
            .copied()
            .find(|p| *p != self.admin)
            .unwrap_or_else(|| self.server.fail("no host port"));
        self.server.client_on(port)
    }

    fn ask(&self, line: &str) -> String {
        let mut client = self.host();
        client.send(format!("{line}\n"));
        client.line()
    }
}

#[test]
fn the_console_lists_modules_and_reload_swaps_a_module_keeping_the_state() {
    let live = start_reloading();
    assert_eq!(live.ask("greet"), "one");
    assert_eq!(live.ask("remember kept"), "true");
    let (lines, ok) = live.console("list");
    assert!(ok);
    let listed = lines
        .iter()
        .find(|l| l.contains(" greeter "))
        .unwrap_or_else(|| live.server.fail(&format!("no greeter in {lines:?}")));
    assert!(listed.contains(" modules=live.greeter@1 "), "{listed}");
    // The hosts run no module.
    assert!(
        lines.iter().any(|l| l.contains(" host-0 modules= ")),
        "{lines:?}"
    );
    let handle = listed.split(' ').next().unwrap_or_default();
    let (lines, ok) = live.console(&format!("info {handle}"));
    assert!(ok, "{lines:?}");
    assert!(
        lines.contains(&"modules live.greeter@1".to_string()),
        "{lines:?}"
    );

    // New code: new Sub calls run it; the runtime's state is kept.
    std::fs::write(&live.module, module_text("2", "two", "")).unwrap();
    let (lines, ok) = live.console("reload live.greeter");
    assert!(ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("greeter live.greeter@1 -> live.greeter@2")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("live.greeter: reloaded in 1 of 1 runtimes")
    );
    assert_eq!(live.ask("greet"), "two");
    assert_eq!(live.ask("recall"), "kept");
    let (lines, _) = live.console("list");
    assert!(
        lines.iter().any(|l| l.contains(" modules=live.greeter@2 ")),
        "{lines:?}"
    );

    // A file that does not compile changes nothing.
    std::fs::write(&live.module, "local M = lunet.module {").unwrap();
    let (lines, ok) = live.console("reload live.greeter");
    assert!(!ok);
    assert!(
        lines[0].contains("reload live.greeter: module live.greeter does not compile")
            && lines[0].ends_with("nothing changed"),
        "{lines:?}"
    );
    assert_eq!(live.ask("greet"), "two");

    // A file that compiles but fails to load leaves the old code running.
    std::fs::write(
        &live.module,
        module_text("3", "three", "error(\"not today\")"),
    )
    .unwrap();
    let (lines, ok) = live.console("reload live.greeter");
    assert!(!ok, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("failed, the old code runs on:") && l.contains("not today")),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("live.greeter: reloaded in 0 of 1 runtimes")
    );
    assert_eq!(live.ask("greet"), "two");
    assert_eq!(live.ask("recall"), "kept");

    let (lines, ok) = live.console("reload no.such");
    assert!(!ok);
    assert!(
        lines[0].contains("no runtime has loaded module no.such"),
        "{lines:?}"
    );
}
