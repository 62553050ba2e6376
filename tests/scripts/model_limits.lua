-- tests/model.rs: the bounds of services hold for runtimes (run with
-- --slice-kill 0.5). Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local function sub(name) return lunet.sub("t.echo", name, "1.0") end

-- Mailbox: while the runtime is busy in one slice, sends past its cap are
-- refused and a call raises.
local flags = lunet.shared.dict("model")
local boxed = lunet.spawn { modules = { "t.echo" }, mailbox = 2, caps = { dicts = { "model" } } }
flags:delete("release")
lunet.send(boxed, sub("busy"))
while not flags:get("busy") do lunet.sleep(1) end
local results = {}
for i = 1, 5 do
    local ok, err = lunet.send(boxed, sub("note"), i)
    results[i] = ok and "ok" or tostring(err)
end
report("mailbox", table.concat(results, " "))
report("mailbox_call", pcall(lunet.call, boxed, sub("twice"), 1))
flags:set("release", true)
local notes
for _ = 1, 1000 do
    local ok, sent = pcall(lunet.call, boxed, sub("sent"))
    if ok then notes = sent break end
    lunet.sleep(1)
end
report("mailbox_after", table.concat(notes, ","))

-- While a runtime loads its modules it keeps what comes for them, up to
-- 10,000 messages; past that a call is refused, and what was kept runs
-- once the modules are loaded.
flags:delete("open")
lunet.fork(function()
    lunet.spawn { modules = { "t.gate" }, name = "gate", caps = { dicts = { "model" } } }
end)
local gate
repeat lunet.sleep(1) gate = lunet.query("gate") until gate
local count = lunet.sub("t.gate", "count", "1")
for _ = 1, 10000 do lunet.send(gate, count) end
report("early_full", pcall(lunet.call, gate, count))
flags:set("open", true)
-- Until it has loaded, calls are still refused (and not kept).
local ok, counted
for _ = 1, 1000 do
    ok, counted = pcall(lunet.call, gate, count)
    if ok then break end
    lunet.sleep(1)
end
report("early_kept", counted)

-- Memory: an allocation past the bound raises in the Sub, at the caller;
-- the runtime lives on.
local small = lunet.spawn { modules = { "t.echo" }, memory = 2 * 1024 * 1024 }
report("memory", pcall(lunet.call, small, sub("allocate"), 8 * 1024 * 1024))
report("memory_alive", lunet.call(small, sub("allocate"), 1000))

-- A slice past --slice-kill is interrupted; the caller gets the error.
local spinner = lunet.spawn { modules = { "t.echo" } }
report("slice", pcall(lunet.call, spinner, sub("spin")))
report("slice_alive", lunet.call(spinner, sub("twice"), 5))
lunet.exit()
