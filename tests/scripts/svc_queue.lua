-- lunet run: lunet.queue() stops sessions of one service interleaving at
-- yields; without it they interleave. Also lunet.wait / lunet.wakeup.
-- Prints key=value lines for tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local service = lunet.spawn("svc_queue_service.lua")
local main = coroutine.running()

-- Three concurrent calls of `command`; returns what they returned, in order.
local function three(command, ...)
    local results, pending = {}, 3
    local args = table.pack(...)
    for i = 1, 3 do
        lunet.fork(function()
            local ok, value = pcall(lunet.call, service, command, i, table.unpack(args, 1, args.n))
            results[i] = ok and tostring(value) or ("error: " .. tostring(value))
            pending = pending - 1
            if pending == 0 then lunet.wakeup(main) end
        end)
    end
    if pending > 0 then lunet.wait() end
    return table.concat(results, " ")
end

show("open_results", three("open", 30))
show("open_trace", lunet.call(service, "trace"))
show("guarded_results", three("guarded", 30))
show("guarded_trace", lunet.call(service, "trace"))
show("error_results", three("guarded_error"))
show("after_error", three("guarded", 1))
lunet.call(service, "trace")
show("reentrant", three("reentrant"))

-- wait / wakeup inside one service.
local sleeper_done = false
local sleeper = coroutine.create(function() end)  -- replaced below
lunet.fork(function()
    sleeper = coroutine.running()
    local values = table.pack(lunet.wait())
    sleeper_done = values.n
end)
lunet.sleep(10)
show("wakeup_not_waiting", lunet.wakeup(main))
show("wakeup_waiting", lunet.wakeup(sleeper))
show("wakeup_twice", lunet.wakeup(sleeper))
lunet.sleep(10)
show("woken", sleeper_done)
