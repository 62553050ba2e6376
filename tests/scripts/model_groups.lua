-- tests/model.rs: groups. Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local function sub(name) return lunet.sub("t.echo", name, "1.0") end

local g = lunet.group("workers")
report("tostring", tostring(g))
report("empty", #g:members())
report("call_empty", pcall(g.call, g, sub("echo")))
local members = {}
for i = 1, 3 do
    members[i] = lunet.spawn { modules = { "t.echo" }, group = "workers" }
end
local listed = g:members()
report("members", #listed, listed[1] == members[1], listed[3] == members[3])
report("same_group", #lunet.group("workers"):members())

-- A send reaches every member (a Sub, or a plain message to a dispatch).
report("send", g:send(sub("note"), "hello"))
local reached = 0
for _, h in ipairs(members) do
    local sent = lunet.call(h, sub("sent"))
    if sent[1] == "hello" then reached = reached + 1 end
end
report("send_reached", reached)

-- A call goes to one member, the less loaded of two drawn.
local answered = {}
for _ = 1, 60 do
    local source, who = g:call(sub("echo"), "x")
    answered[source] = true
end
local callers = 0
for _ in pairs(answered) do callers = callers + 1 end
report("call_answered_by_caller", answered[lunet.self()] == true, callers)
local spread = {}
for _ = 1, 60 do
    spread[g:call(lunet.sub("t.echo", "whoami", "1.0"))] = true
end
local n = 0
for _ in pairs(spread) do n = n + 1 end
report("call_spread", n)

-- Join, leave; a member that exits leaves.
report("join_self", g:join(), g:join())
report("after_join", #g:members())
report("leave_self", g:leave(), g:leave())
lunet.kill(members[2])
settle(function() return #g:members() == 2 end)
report("after_exit", #g:members())
report("join_dead", pcall(g.join, g, 999999))
report("bad_name", pcall(lunet.group, 5))
report("send_function", pcall(g.send, g, print))
lunet.exit()
