-- skynet's gate -> agent: every host accepts connections and hands each to
-- one of its agents (gate_agent.lua), which then reads and writes it. The
-- first line says how:
--   "send NAME"  hands the socket over with lunet.send(agent, "take", sock, NAME)
--   "call NAME"  with lunet.call(agent, "take", {sock = sock, name = NAME})
--   "checks"     runs the unhappy paths of a hand-off and reports them
-- Lines the client pipelined behind the first one are buffered in the
-- gate when it hands the socket over: they must reach the agent.
local lunet = require "lunet"

local agents = {}
for i = 1, tonumber(lunet.getenv("agents", "3")) do
    agents[i] = lunet.spawn("gate_agent.lua")
end
local turn = 0
local function next_agent()
    turn = turn % #agents + 1
    return agents[turn]
end

-- An error's text, or the part of it a test looks for.
local function text(err, part)
    err = tostring(err)
    return err:match(part) or err
end

local function show(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    return table.concat(parts, " ")
end

local function checks(sock)
    local report = {}
    -- A session waits on the socket: handing it over raises.
    local reading, main = false, coroutine.running()
    lunet.fork(function()
        reading = true
        local line = sock:readline()
        report[#report + 1] = "reader got " .. tostring(line)
        lunet.wakeup(main)
    end)
    repeat lunet.sleep(0) until reading
    local ok, err = pcall(lunet.send, next_agent(), "take", sock, "busy")
    report[#report + 1] = "busy " .. show(ok, text(err, "socket busy"))
    sock:write("release the reader\n")
    lunet.wait()
    -- To a dead service: the send fails and the socket stays here.
    local dead = lunet.spawn("gate_agent.lua")
    lunet.kill(dead)
    report[#report + 1] = "dead " .. show(lunet.send(dead, "take", sock, "dead"))
    ok, err = pcall(lunet.call, dead, "take", sock, "dead")
    report[#report + 1] = "dead_call " .. show(ok, text(err, "is dead"))
    report[#report + 1] = "still_mine " .. show(sock:write(""))
    -- Handed over: this service's object is closed for it, and a closed
    -- socket cannot be handed over.
    local agent = next_agent()
    report[#report + 1] = "handed " .. show(lunet.call(agent, "take", { sock = sock, name = "checks" }))
    report[#report + 1] = "after_write " .. show(sock:write("x"))
    report[#report + 1] = "after_read " .. show(sock:readline())
    report[#report + 1] = "after_close " .. show(sock:close())
    ok, err = pcall(lunet.send, agent, "take", sock, "again")
    report[#report + 1] = "again " .. show(ok, text(err, "closed socket"))
    lunet.call(agent, "say", "checks", table.concat(report, "; "))
end

lunet.listen(lunet.getenv("listen"), function(sock)
    local first = sock:readline()
    if not first then return end
    local how, name = first:match("^(%a+) ?(.*)$")
    if how == "send" then
        assert(lunet.send(next_agent(), "take", sock, name))
    elseif how == "call" then
        assert(lunet.call(next_agent(), "take", { sock = sock, name = name }) == "taken")
    elseif how == "checks" then
        checks(sock)
    else
        sock:write("unknown ", first, "\n")
    end
end)
