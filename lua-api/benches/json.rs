//! lunet.json against lua-cjson 2.1 under Lua 5.4 (Debian's `lua5.4` and
//! `lua-cjson`), the same documents and loop (`json_bench.lua`):
//!
//!   cargo bench -p lunet-lua --bench json
//!
//! Prints operations per second for both and the ratio. A measurement, not
//! a test: nothing here fails on a number.

use std::collections::BTreeMap;
use std::process::Command;

const SCRIPT: &str = include_str!("json_bench.lua");

/// "row value" lines into a map.
fn rows(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter_map(|line| {
            let (row, value) = line.split_once(' ')?;
            Some((row.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

fn main() -> mlua::Result<()> {
    let lua = mlua::Lua::new();
    let json = lunet_lua::json::module(&lua)?;
    let printed = lua.create_table()?;
    let collect = printed.clone();
    lua.globals().set(
        "print",
        lua.create_function(move |_, line: String| collect.raw_push(line))?,
    )?;
    lua.load(SCRIPT)
        .set_name("json_bench.lua")
        .call::<()>(json)?;
    let ours: Vec<String> = printed.sequence_values().collect::<mlua::Result<_>>()?;
    let ours = rows(&ours.join("\n"));

    let path = std::env::temp_dir().join("lunet_json_bench.lua");
    let anchor = std::fs::write(&path, SCRIPT)
        .ok()
        .and_then(|()| Command::new("lua5.4").arg(&path).output().ok())
        .filter(|output| output.status.success())
        .map(|output| rows(&String::from_utf8_lossy(&output.stdout)));
    if anchor.is_none() {
        println!("(lua5.4 with lua-cjson not found: apt-get install lua5.4 lua-cjson)");
    }
    println!(
        "{:<14} {:>14} {:>14} {:>7}",
        "row", "lunet.json/s", "cjson/s", "ratio"
    );
    for (row, value) in &ours {
        let theirs = anchor.as_ref().and_then(|a| a.get(row)).copied();
        match theirs {
            Some(theirs) if !row.starts_with("bytes") => {
                println!(
                    "{row:<14} {value:>14.0} {theirs:>14.0} {:>6.2}x",
                    value / theirs
                )
            }
            Some(theirs) => println!("{row:<14} {value:>14.0} {theirs:>14.0}"),
            None => println!("{row:<14} {value:>14.0}"),
        }
    }
    Ok(())
}
