//! Lua libraries: where `require` looks (the script's directory,
//! `lua_modules/`, the system's 5.4 directories, `LUA_PATH`/`LUA_CPATH`),
//! from any working directory, in spawned services too, and C modules
//! (Debian's `lua-cjson` for 5.4) loaded into the `lunet` binary, which
//! exports the Lua C API.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;

/// `lunet run script` from `cwd` with `env` added; its output, bounded by
/// [`common::DEADLINE`].
#[track_caller]
fn run_in(cwd: &Path, script: &Path, env: &[(&str, &str)]) -> Output {
    common::run_with_input(
        Command::new(common::binary())
            .arg("run")
            .arg(script)
            .current_dir(cwd)
            .env_remove("LUA_PATH")
            .env_remove("LUA_PATH_5_4")
            .env_remove("LUA_CPATH")
            .env_remove("LUA_CPATH_5_4")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1"),
        b"",
    )
}

/// Asserts the run succeeded and printed exactly `expected` on stdout.
#[track_caller]
fn expect_stdout(output: &Output, expected: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout == expected,
        "status {}, expected stdout {expected:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_c_module_from_debian_loads_into_the_binary() {
    assert!(
        Path::new("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so").exists()
            || Path::new("/usr/lib/lua/5.4/cjson.so").exists(),
        "Debian's lua-cjson is not installed: apt-get install lua-cjson"
    );
    let dir = TempDir::new("cjson");
    let script = dir.0.join("main.lua");
    write(
        &script,
        r#"
        local cjson = require "cjson"
        local value = cjson.decode('{"list":[1,2,3],"name":"lunet"}')
        print(value.name, #value.list, cjson.encode({ok = true}))
        print(package.loaded.cjson == cjson, cjson.null ~= nil)
        "#,
    );
    let output = run_in(Path::new("/"), &script, &[]);
    expect_stdout(&output, "lunet\t3\t{\"ok\":true}\ntrue\ttrue\n");
}

#[test]
fn a_module_next_to_the_script_is_found_from_any_working_directory() {
    let dir = TempDir::new("nextto");
    let script = dir.0.join("main.lua");
    write(
        &dir.0.join("json.lua"),
        "return { name = 'next to the script' }",
    );
    write(
        &dir.0.join("util/init.lua"),
        "return { name = 'a folder with init.lua' }",
    );
    write(
        &script,
        r#"
        print(require("json").name)
        print(require("util").name)
        "#,
    );
    let expected = "next to the script\na folder with init.lua\n";
    for cwd in [Path::new("/"), dir.0.as_path(), Path::new("/tmp")] {
        expect_stdout(&run_in(cwd, &script, &[]), expected);
    }
    // A relative script path, from the directory above it.
    let relative = Path::new(dir.0.file_name().unwrap()).join("main.lua");
    expect_stdout(&run_in(dir.0.parent().unwrap(), &relative, &[]), expected);
}

#[test]
fn lua_modules_follow_the_luarocks_tree_layout_and_come_after_the_script() {
    let dir = TempDir::new("rocks");
    let rocks = dir.0.join("lua_modules/share/lua/5.4");
    write(&rocks.join("rock.lua"), "return 'from lua_modules'");
    write(
        &rocks.join("tree/init.lua"),
        "return 'tree from lua_modules'",
    );
    write(&rocks.join("shadowed.lua"), "return 'lua_modules'");
    write(&dir.0.join("shadowed.lua"), "return 'script directory'");
    let script = dir.0.join("main.lua");
    write(
        &script,
        r#"
        print(require "rock", require "tree", (require "shadowed"))
        local ok, err = pcall(require, "no_such_module_anywhere")
        print(ok, err:find("lua_modules/share/lua/5.4/no_such_module_anywhere.lua", 1, true) ~= nil)
        "#,
    );
    expect_stdout(
        &run_in(Path::new("/"), &script, &[]),
        "from lua_modules\ttree from lua_modules\tscript directory\nfalse\ttrue\n",
    );
}

#[test]
fn lua_path_replaces_the_default_and_a_double_semicolon_brings_it_back() {
    let dir = TempDir::new("luapath");
    let elsewhere = TempDir::new("luapath-other");
    write(&elsewhere.0.join("other.lua"), "return 'from LUA_PATH'");
    write(
        &dir.0.join("mine.lua"),
        "return 'from the script directory'",
    );
    let script = dir.0.join("main.lua");
    write(
        &script,
        r#"
        print((require "other"))
        print((pcall(require, "mine")), package.loaded.mine)
        "#,
    );
    let other = format!("{}/?.lua", elsewhere.0.display());
    // With ";;" the default (the script's directory) follows.
    let with_default = format!("{other};;");
    expect_stdout(
        &run_in(Path::new("/"), &script, &[("LUA_PATH", &with_default)]),
        "from LUA_PATH\ntrue\tfrom the script directory\n",
    );
    // The _5_4 variant wins over the plain one.
    expect_stdout(
        &run_in(
            Path::new("/"),
            &script,
            &[
                ("LUA_PATH_5_4", &with_default),
                ("LUA_PATH", "/nowhere/?.lua"),
            ],
        ),
        "from LUA_PATH\ntrue\tfrom the script directory\n",
    );
    // Without it the default is gone.
    let output = run_in(Path::new("/"), &script, &[("LUA_PATH", &other)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("from LUA_PATH\nfalse\t"),
        "stdout: {stdout}"
    );
    // LUA_CPATH alone: cjson is not found without the default, found with it.
    let script = dir.0.join("cpath.lua");
    write(&script, "print(pcall(require, 'cjson'))");
    let output = run_in(Path::new("/"), &script, &[("LUA_CPATH", "/nowhere/?.so")]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("false\t"),
        "{output:?}"
    );
    let output = run_in(Path::new("/"), &script, &[("LUA_CPATH", "/nowhere/?.so;;")]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("true\t"),
        "{output:?}"
    );
}

#[test]
fn spawned_services_see_the_same_paths() {
    let dir = TempDir::new("spawned");
    write(&dir.0.join("json.lua"), "return { name = 'shared module' }");
    write(
        &dir.0.join("child.lua"),
        r#"
        local lunet = require "lunet"
        local json = require "json"
        local cjson = require "cjson"
        lunet.dispatch(function()
            return json.name, cjson.encode({1}), package.path
        end)
        "#,
    );
    let script = dir.0.join("main.lua");
    write(
        &script,
        r#"
        local lunet = require "lunet"
        local child = lunet.spawn { script = "child.lua", trusted = true }
        local name, encoded, path = lunet.call(child, "go")
        print(name, encoded, path == package.path)
        lunet.exit()
        "#,
    );
    expect_stdout(
        &run_in(Path::new("/"), &script, &[]),
        "shared module\t[1]\ttrue\n",
    );
}
