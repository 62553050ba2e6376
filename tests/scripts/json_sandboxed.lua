-- tests/json.rs: a sandboxed service decodes and encodes with lunet.json.
local lunet = require "lunet"
lunet.dispatch(function(_, text)
    local value = lunet.json.decode(text)
    value.n = #value.x
    return lunet.json.encode(value)
end)
