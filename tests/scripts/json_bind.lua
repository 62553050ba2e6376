-- tests/json.rs: lunet.json in a trusted VM (this one) and in a sandboxed
-- service (json_sandboxed.lua). Prints key=value lines.
local lunet = require "lunet"
local json = lunet.json

local function say(key, ...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    print(key .. "=" .. table.concat(parts, " ", 1, parts.n))
end

say("same_module", lunet.json == json, require("lunet").json == json)
say("array", json.encode({ 1, 2, "three", json.null }))
say("empty", json.encode(setmetatable({}, json.array_mt)), json.encode({}))
local decoded = json.decode('{"a": [1, 2.5, null, true], "b": {"c": "\\u00e9\\ud83d\\ude00"}}')
say("decoded", decoded.a[1], decoded.a[2], decoded.a[3] == json.null, decoded.a[4], decoded.b.c)
say("decode_error", json.decode('{"a": tru}'))
say("encode_nan", pcall(json.encode, { 0 / 0 }))
local cycle = {}
cycle.self = cycle
say("encode_cycle", pcall(json.encode, cycle))
say("encode_function", pcall(json.encode, { f = print }))

local sandboxed = lunet.spawn({ script = lunet.getenv("sandboxed") })
say("sandboxed", lunet.call(sandboxed, '{"x": [1, 2]}'))
lunet.exit()
