-- tests/model.rs: Subs. Runtimes of tests/modules/t/*.lua (lunet run
-- --modules tests/modules); prints key=value lines the test checks.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local echo_rt = lunet.spawn { modules = { "t.echo" }, name = "echo" }
local cps_rt = lunet.spawn { modules = { "t.cps" } }
local other_cps = lunet.spawn { modules = { "t.cps" } }

local echo = lunet.sub("t.echo", "echo")
report("reference", tostring(echo), echo.module, echo.version, echo.name)
local source, a, b = lunet.call(echo_rt, echo, "x", 2)
report("echo", source == lunet.self(), a, b)
report("by_name", lunet.call("echo", lunet.sub("t.echo", "twice"), 21))
report("dependency", lunet.call(echo_rt, lunet.sub("t.util", "hidden")))
report("globals", lunet.call(echo_rt, lunet.sub("t.echo", "globals")))
report("fail", pcall(lunet.call, echo_rt, lunet.sub("t.echo", "fail"), "why"))
report("alive_after_fail", lunet.call(echo_rt, lunet.sub("t.echo", "twice"), 1))

-- One-way: RunSub, in order with calls from the same sender.
for i = 1, 5 do assert(lunet.send(echo_rt, lunet.sub("t.echo", "note"), i)) end
report("sent", table.concat(lunet.call(echo_rt, lunet.sub("t.echo", "sent")), ","))

-- CPS: "ask" answers with the continuation it got; the caller runs it in
-- another runtime.
local done = lunet.sub("t.cps", "done")
local k, value, asked_from = lunet.call(cps_rt, lunet.sub("t.cps", "ask"), 21, done)
report("continuation", k == done, tostring(k), value, asked_from == lunet.self())
report("run_continuation", lunet.call(other_cps, k, value, "caller"))
local result = lunet.call(other_cps, lunet.sub("t.cps", "result"))
report("continuation_ran", result.value, result.from, result.runner == other_cps)
local nothing = lunet.call(cps_rt, lunet.sub("t.cps", "result"))
report("not_in_the_first", nothing == nil)

-- References as values, nested in tables, equal by id.
local ref, tbl = lunet.call(cps_rt, lunet.sub("t.cps", "reference"))
report("returned_reference", ref == done, tostring(tbl.k))
report("reference_rawequal", rawequal(ref, done))
report("sent_reference", select(2, lunet.call(echo_rt, echo, done)) == done)

-- A runtime found by its name while its modules still load: what comes
-- meanwhile waits until they are loaded.
lunet.fork(function() lunet.spawn { modules = { "t.slow" }, name = "slow" } end)
local slow
repeat lunet.sleep(1) slow = lunet.query("slow") until slow
local heard
local attached = lunet.attach(slow, "t.slow.up", function(_, what) heard = what end)
report("early_call", lunet.call(slow, lunet.sub("t.slow", "hello", "1")), attached)
lunet.call(slow, lunet.sub("t.slow", "fire", "1"))
for _ = 1, 500 do if heard then break end lunet.sleep(1) end
report("early_attach", heard)

-- Versions: lunet.sub takes the one this process loaded, or the one given.
report("version_known", lunet.sub("t.cps", "ask").version)
report("version_given", lunet.sub("t.nowhere", "x", "3.1").version)
lunet.exit()
