//! Link settings of the `lunet` binary.

fn main() {
    // Lua C modules (lua-cjson, lpeg, ...) are shared objects that call the
    // Lua C API of the program that loads them: the binary exports the
    // symbols of its vendored Lua, and only those (`-rdynamic` would export
    // every Rust symbol too). An exported symbol counts as used, so
    // `--gc-sections` keeps the API functions lunet itself never calls.
    for pattern in ["lua_*", "luaL_*", "luaopen_*"] {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol={pattern}");
    }
}
