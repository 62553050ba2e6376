-- lunet run: every way a call can fail must raise at the caller, never
-- hang. Prints key=value lines for tests/services.rs (errors as text).
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    -- One line per value: error messages carry tracebacks over several lines.
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local function try(key, fn, ...)
    show(key, pcall(fn, ...))
end

-- Waits until `handle` is gone for good (kill and exit are asynchronous):
-- until a call finds no such service ("lunet.call: service :N is dead").
local function await_death(handle)
    for _ = 1, 1000 do
        local ok, err = pcall(lunet.call, handle, "ping")
        if not ok and tostring(err):find("is dead", 1, true) then return true end
        lunet.sleep(1)
    end
    return false
end

-- The handler raises: the caller raises with its message.
local worker = lunet.spawn("svc_worker.lua", "w")
try("handler_error", lunet.call, worker, "fail", "custom failure 42")
try("after_handler_error", lunet.call, worker, "ping")
try("unknown_command", lunet.call, worker, "no-such-command")

-- A call pending in a sleeping session when the target is killed.
local victim = lunet.spawn("svc_worker.lua", "victim")
local main = coroutine.running()
local outcome
-- Waits for the forked caller's outcome (it may have arrived already, while
-- this session was itself waiting for something else).
local function await_outcome()
    if outcome == nil then lunet.wait() end
    local result = outcome
    outcome = nil
    return table.unpack(result, 1, result.n)
end
lunet.fork(function()
    outcome = table.pack(pcall(lunet.call, victim, "sleep", 60000))
    lunet.wakeup(main)
end)
lunet.sleep(20)               -- let the call reach the victim
show("kill_live", lunet.kill(victim))
show("pending_when_killed", await_outcome())
show("dead_after_kill", await_death(victim))
try("call_dead", lunet.call, victim, "ping")
show("send_dead", lunet.send(victim, "ping"))
show("kill_dead", lunet.kill(victim))

-- A delayed answer still owed when the target exits on its own.
local quitter = lunet.spawn("svc_worker.lua", "quitter")
lunet.fork(function()
    outcome = table.pack(pcall(lunet.call, quitter, "hold", 1))
    lunet.wakeup(main)
end)
lunet.sleep(20)
try("exit_call", lunet.call, quitter, "exit")
show("pending_when_exited", await_outcome())
show("dead_after_exit", await_death(quitter))

-- A call pending in a sleeping session when another session exits.
local sleeper = lunet.spawn("svc_worker.lua", "sleeper")
lunet.fork(function()
    outcome = table.pack(pcall(lunet.call, sleeper, "sleep", 60000))
    lunet.wakeup(main)
end)
lunet.sleep(20)
lunet.send(sleeper, "exit")
show("sleeping_when_exited", await_outcome())

-- No dispatch function, unknown names, bad handles.
local mute = lunet.spawn("svc_nodispatch.lua")
try("no_dispatch", lunet.call, mute, "ping")
try("unknown_name", lunet.call, "no-such-service", "ping")
show("send_unknown_name", lunet.send("no-such-service", "ping"))
try("bad_handle", lunet.call, {}, "ping")
