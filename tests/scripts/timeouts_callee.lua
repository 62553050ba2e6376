-- The callee of timeouts.lua: "wait" parks the answering session in
-- lunet.wait() until "wake"; "lane" holds it in a long lane call; "echo"
-- answers at once with its arguments.
local lunet = require "lunet"

local parked = {}
lunet.dispatch(function(_, command, ...)
    if command == "wait" then
        parked[#parked + 1] = coroutine.running()
        lunet.wait()
        return "late answer"
    elseif command == "wake" then
        local woken = #parked
        for i = 1, woken do lunet.wakeup(parked[i]) end
        parked = {}
        return woken
    elseif command == "lane" then
        lunet.lane.sleep((...))
        return "late lane answer"
    elseif command == "echo" then
        return ...
    end
    error("unknown command " .. tostring(command))
end)
