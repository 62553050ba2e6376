-- lunet run --slice-kill 1: the monitor interrupts `while true do end` and
-- the pcall-loop variant in one service while another service keeps
-- answering calls; the interrupted service lives on. Prints key=value lines
-- for tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
    io.stdout:flush()
end

local spinner = lunet.spawn("svc_worker.lua", "spinner")
local other = lunet.spawn("svc_worker.lua", "other")
local main = coroutine.running()

-- Calls `command` on the spinner in a session of its own, and meanwhile
-- calls the other service until that session ends. Returns the spinner's
-- outcome and how many calls the other service answered in the meantime.
local function spin_while_pinging(command)
    local outcome
    lunet.fork(function()
        outcome = table.pack(pcall(lunet.call, spinner, command))
        lunet.wakeup(main)
    end)
    local answered = 0
    lunet.sleep(1)
    while outcome == nil do
        if lunet.call(other, "ping") == "pong" then answered = answered + 1 end
        lunet.sleep(5)
    end
    return answered, table.unpack(outcome, 1, outcome.n)
end

local answered, ok, err = spin_while_pinging("spin")
show("spin", ok, err)
show("spin_other_answered", answered > 0)
show("spin_then_ping", lunet.call(spinner, "ping"))

answered, ok, err = spin_while_pinging("pcall_spin")
show("pcall_spin", ok, err)
show("pcall_spin_other_answered", answered > 0)
show("pcall_spin_then_ping", lunet.call(spinner, "ping"))
