-- The service of svc_queue.lua: "guarded" and "open" enter a section, sleep
-- inside it, and leave; the trace shows whether sessions interleaved.
local lunet = require "lunet"

local trace = {}
local cs = lunet.queue()

local function section(i, ms)
    trace[#trace + 1] = "enter" .. i
    lunet.sleep(ms)
    trace[#trace + 1] = "leave" .. i
    return i
end

local commands = {}

function commands.guarded(i, ms)
    return cs(section, i, ms)
end

function commands.open(i, ms)
    return section(i, ms)
end

-- An error inside the section is re-raised and releases it.
function commands.guarded_error(i)
    return cs(function()
        trace[#trace + 1] = "enter" .. i
        error("failed inside the section", 0)
    end)
end

-- A session inside the section may enter it again (no deadlock).
function commands.reentrant(i)
    return cs(function()
        return cs(function() return "inner" .. i end)
    end)
end

function commands.trace()
    local text = table.concat(trace, " ")
    trace = {}
    return text
end

lunet.dispatch(function(source, command, ...)
    return commands[command](...)
end)
