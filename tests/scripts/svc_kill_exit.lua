-- lunet run --workers 1: what a caller sees right after it killed a
-- service, or right after its message made the service exit. With one
-- worker, everything this script sends in one slice is in the target's
-- mailbox before the target runs. Prints key=value lines for
-- tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local function try(key, fn, ...)
    show(key, pcall(fn, ...))
end

-- A successful send returns exactly one value.
local worker = lunet.spawn("svc_worker.lua", "sender-check")
show("send_ok", lunet.send(worker, "note"))

-- Killed: from that moment on, messages are refused as dead.
local killed = lunet.spawn("svc_worker.lua", "killed")
show("kill", lunet.kill(killed))
try("call_after_kill", lunet.call, killed, "ping")
show("send_after_kill", lunet.send(killed, "note"))

-- A call queued behind a message that makes the service exit is not
-- dispatched: its caller gets an error.
local quitter = lunet.spawn { script = "svc_worker.lua", name = "quitter", args = { "quitter" } }
lunet.send(quitter, "exit")
try("call_behind_exit", lunet.call, quitter, "ping")

-- lunet.exit() in the session that answers a call: the caller gets an error.
local exiter = lunet.spawn { script = "svc_worker.lua", name = "exiter", args = { "exiter" } }
try("exit_in_call", lunet.call, exiter, "exit")
