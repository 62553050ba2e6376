-- lunet run: every type through the codec and back (an echo call to a
-- sandboxed service), and every value the codec refuses. Prints key=value
-- lines for tests/services.rs: "ok" or what differed.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

-- Describes a value exactly: math.type, sign of zero, NaN, bytes.
local function describe(value, depth)
    depth = depth or 0
    local kind = type(value)
    if kind == "number" then
        if value ~= value then return "float:nan" end
        if value == 0 and math.type(value) == "float" then
            return 1 / value < 0 and "float:-0.0" or "float:0.0"
        end
        return math.type(value) .. ":" .. string.format(math.type(value) == "float" and "%.17g" or "%d", value)
    elseif kind == "string" then
        return "string:" .. string.format("%q", value)
    elseif kind == "table" then
        local keys = {}
        for k in pairs(value) do keys[#keys + 1] = k end
        local described = {}
        for i, k in ipairs(keys) do described[i] = { describe(k, depth + 1), k } end
        table.sort(described, function(a, b) return a[1] < b[1] end)
        local parts = {}
        for i, entry in ipairs(described) do
            parts[i] = "[" .. entry[1] .. "]=" .. describe(value[entry[2]], depth + 1)
        end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    return kind .. ":" .. tostring(value)
end

local function describe_all(...)
    local parts = { "n=" .. select("#", ...) }
    for i = 1, select("#", ...) do parts[#parts + 1] = describe((select(i, ...))) end
    return table.concat(parts, " ")
end

local echo = lunet.spawn("svc_worker.lua", "echo")

local function round_trip(key, ...)
    local sent = describe_all(...)
    local ok, got = pcall(function(...) return describe_all(lunet.call(echo, "echo", ...)) end, ...)
    if not ok then
        show(key, "error: " .. tostring(got))
    elseif got == sent then
        show(key, "ok")
    else
        show(key, "sent " .. sent .. " got " .. got)
    end
end

local all_bytes = {}
for b = 0, 255 do all_bytes[#all_bytes + 1] = string.char(b) end
all_bytes = table.concat(all_bytes)

round_trip("nothing")
round_trip("nils", nil, nil, nil)
round_trip("booleans", true, false)
round_trip("integers", 0, 1, -1, 42, math.maxinteger, math.mininteger)
round_trip("floats", 0.5, -2.25, 3.0, 1e308, 5e-324, 0.1, math.huge, -math.huge, 0.0, -0.0)
round_trip("nan", 0 / 0)
round_trip("strings", "", "hello", all_bytes, "nul\0inside")
round_trip("big_string", string.rep("abcdefgh", 128 * 1024))
round_trip("array", { 1, 2, 3, "four", 5.5, true })
round_trip("map", { a = 1, b = "two", [3.5] = "float key", [true] = false, [-7] = "negative", [0] = "zero" })
round_trip("mixed", { 10, 20, 30, x = { y = { z = "deep" } }, [100] = "far" })
round_trip("nested", { { { { {} } } }, {}, { list = { 1, { 2, { 3 } } } } })
round_trip("holes_after_array", { 1, 2, nil, 4 })
local shared = { "same" }
round_trip("shared_reference", { shared, shared, inner = { shared } })
round_trip("integer_float_keys", { [1] = "int", [2.0] = "float normalised", [2.5] = "float" })

-- Nesting: 32 levels go through, 33 do not.
local function nest(levels)
    local root = {}
    local t = root
    for _ = 2, levels do
        local inner = {}
        t[1] = inner
        t = inner
    end
    return root
end
round_trip("depth_32", nest(32))
show("depth_33_call", pcall(lunet.call, echo, "echo", nest(33)))
show("depth_33_send", pcall(lunet.send, echo, "echo", nest(33)))

-- Values the codec refuses, at the sender.
local cycle = {}
cycle.self = cycle
local indirect = { a = { b = {} } }
indirect.a.b.back = indirect
local dict = lunet.shared.dict("svc_codec")
show("function_call", pcall(lunet.call, echo, "echo", print))
show("function_send", pcall(lunet.send, echo, "echo", function() end))
show("coroutine_send", pcall(lunet.send, echo, "echo", coroutine.create(print)))
show("userdata_send", pcall(lunet.send, echo, "echo", dict))
show("file_send", pcall(lunet.send, echo, "echo", io.stdout))
show("cycle_send", pcall(lunet.send, echo, "echo", cycle))
show("indirect_cycle_call", pcall(lunet.call, echo, "echo", indirect))
show("function_in_table", pcall(lunet.send, echo, "echo", { 1, 2, { f = print } }))
show("function_as_key", pcall(lunet.send, echo, "echo", { [print] = 1 }))
show("spawn_args", pcall(lunet.spawn, "svc_worker.lua", print))

-- The echo service is unharmed by all of this.
show("after_errors", lunet.call(echo, "ping"))
