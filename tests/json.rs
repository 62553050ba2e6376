//! lunet.json as scripts reach it: in a trusted VM and in a sandboxed
//! service, encode and decode, and the errors scripts see (the codec
//! itself is tested in lua-api/src/json.rs).

mod common;

use std::time::Duration;

use common::{run_script, test_script};

#[test]
fn lunet_json_in_trusted_and_sandboxed_vms() {
    let sandboxed = format!("sandboxed={}", test_script("json_sandboxed.lua").display());
    let ran = run_script(
        &test_script("json_bind.lua"),
        &[&sandboxed],
        Duration::from_secs(10),
    )
    .must_succeed("json_bind.lua failed");
    ran.expect("same_module", "true true");
    ran.expect("array", r#"[1,2,"three",null]"#);
    ran.expect("empty", "[] {}");
    ran.expect("decoded", "1 2.5 true true é😀");
    ran.expect_parts("decode_error", "nil ", &["byte 7"]);
    ran.expect_parts("encode_nan", "false ", &["NaN"]);
    ran.expect_parts("encode_cycle", "false ", &["cycle"]);
    ran.expect_parts("encode_function", "false ", &["cannot encode a function"]);
    let sandboxed = ran.value("sandboxed");
    assert!(
        sandboxed == r#"{"x":[1,2],"n":2}"# || sandboxed == r#"{"n":2,"x":[1,2]}"#,
        "{sandboxed}"
    );
}
