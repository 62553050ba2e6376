//! `lunet.json.decode` (`lua-api/src/json.rs`) through a Lua VM, then
//! encode and decode again.
//!
//! Invariants:
//! - decode never raises on a string: it gives a value, or nil and an
//!   error that names a byte position within the input (1 to length + 1);
//! - whatever decodes also encodes (encode raises nothing on it), except
//!   a number beyond the float range: decode gives ±inf for `1e400` (as
//!   lua-cjson does; the unit test `decodes_values` asserts it) and encode
//!   refuses infinities, so such a value must hold an infinity;
//! - the encoding decodes to an equal value: same types (integer and float
//!   apart, -0.0 apart from 0), same strings, same tables with the same
//!   `array_mt` marks; and encodes again to as many bytes (object keys may
//!   come out in another order).

#![no_main]

use libfuzzer_sys::fuzz_target;
use lunet_lua::mlua::{Function, Lua};

const CHECK: &str = r#"
local json = ...
local decode, encode = json.decode, json.encode
local math_type, getmetatable, pairs, type = math.type, getmetatable, pairs, type

local function same(a, b)
    if type(a) ~= type(b) then return false end
    if type(a) == "number" then
        if math_type(a) ~= math_type(b) or a ~= b then return false end
        -- 0.0 and -0.0 are equal to ==; their inverses are not.
        return a ~= 0 or 1 / a == 1 / b
    end
    if type(a) ~= "table" then return a == b end
    if getmetatable(a) ~= getmetatable(b) then return false end
    local count = 0
    for key, value in pairs(a) do
        if not same(value, b[key]) then return false end
        count = count + 1
    end
    for _ in pairs(b) do count = count - 1 end
    return count == 0
end

local function has_infinity(value)
    if type(value) == "number" then return value == math.huge or value == -math.huge end
    if type(value) ~= "table" then return false end
    for _, item in pairs(value) do
        if has_infinity(item) then return true end
    end
    return false
end

return function(text)
    local value, err = decode(text)
    if value == nil then
        local at = tonumber(string.match(err or "", "at byte (%d+)$"))
        assert(at and at >= 1 and at <= #text + 1, "decode error without a position in the input: " .. tostring(err))
        return
    end
    local ok, encoded = pcall(encode, value)
    if not ok then
        assert(has_infinity(value), "a decoded value does not encode: " .. tostring(encoded))
        return
    end
    local again, err2 = decode(encoded)
    assert(again ~= nil, "the encoding does not decode: " .. tostring(err2) .. " in " .. encoded)
    assert(same(value, again), "a round trip changed the value: " .. encoded)
    local encoded_again = encode(again)
    assert(#encoded_again == #encoded, "encoded sizes differ: " .. encoded .. " / " .. encoded_again)
end
"#;

thread_local! {
    /// One VM for every run; the checker is compiled once.
    static CHECKER: (Lua, Function) = {
        let lua = Lua::new();
        let json = lunet_lua::json::module(&lua).expect("the json module");
        let check: Function = lua
            .load(CHECK)
            .set_name("=fuzz_json")
            .call(json)
            .expect("the checker compiles");
        (lua, check)
    };
}

fuzz_target!(|data: &[u8]| {
    CHECKER.with(|(lua, check)| {
        let text = lua.create_string(data).expect("a Lua string");
        if let Err(e) = check.call::<()>(text) {
            panic!("{e}");
        }
    });
});
