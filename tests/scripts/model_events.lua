-- tests/model.rs: events. Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local function sub(name) return lunet.sub("t.counter", name, "1") end

local firing = lunet.spawn { modules = { "t.counter" } }

-- In the runtime itself.
report("attach_here", lunet.call(firing, sub("attach_here")))
report("attach_unknown", lunet.call(firing, sub("attach_unknown")))

-- From outside ("black box"): fn runs here, with the firing handle first.
local got = {}
report("attach_outside", lunet.attach(firing, "t.counter.tick", function(from, n, also)
    got[#got + 1] = { from = from, n = n, also = also }
end))
report("attach_outside_unknown", pcall(lunet.attach, firing, "t.counter.nope", print))
report("attach_plain_service", pcall(lunet.attach, lunet.self(), "t.counter.tick", print))
report("attach_dead", pcall(lunet.attach, 999999, "t.counter.tick", print))

report("fired", lunet.call(firing, sub("fire"), 1))
settle(function() return #got == 1 end)
report("delivered", #got, got[1].from == firing, got[1].n, got[1].also == firing)
report("local", table.concat(lunet.call(firing, sub("ticks")), ","))

-- An attacher that exits: its attachment ends (the firing runtime drops
-- it when a delivery finds it dead).
local watcher = lunet.spawn { script = "model_watcher.lua" }
lunet.call(watcher, "watch", firing)
report("with_watcher", lunet.call(firing, sub("fire"), 2))
settle(function() return #got == 2 end)
report("watcher_saw", lunet.call(watcher, "seen"))
lunet.kill(watcher)
settle(function() return not lunet.send(watcher, "x") end)
report("after_watcher_exit", lunet.call(firing, sub("fire"), 3))
report("after_watcher_exit_again", lunet.call(firing, sub("fire"), 4))

-- Groups: a watch made before any member joins reaches members that join
-- later, with the member's handle first.
local group = lunet.group("counters")
local seen = {}
report("group_attach", group:attach("t.counter.tick", function(member, n)
    seen[#seen + 1] = member .. ":" .. n
end))
local member = lunet.spawn { modules = { "t.counter" }, group = "counters" }
report("member_fires", lunet.call(member, sub("fire"), 7))
settle(function() return #seen == 1 end)
report("group_delivered", seen[1] == member .. ":7")
-- The first runtime is no member: the group's watch does not see it.
lunet.call(firing, sub("fire"), 8)
settle(function() return #got >= 6 end)
report("non_member", #seen)
group:join(firing)
lunet.call(firing, sub("fire"), 9)
settle(function() return #seen == 2 end)
report("joined_member", seen[2] == firing .. ":9")
-- Values that cannot be copied raise at the firing side.
report("fire_unsendable", lunet.call(firing, sub("fire_function")))
report("fire_undefined", pcall(lunet.fire, "t.counter.tick"))
lunet.exit()
