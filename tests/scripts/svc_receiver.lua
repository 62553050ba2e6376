-- The receiving end of the ordering and counter tests.
--
-- "seq", tag, i   : checks that messages of each tag arrive as 1, 2, 3, ...
-- "add"           : n = n + 1 inside a section that would notice a second
--                   thread running this VM at the same time
local lunet = require "lunet"

local last = {}          -- tag -> last sequence number seen
local out_of_order = 0
local received = 0

local n = 0
local inside = false     -- true while a session is in the add section
local overlaps = 0

local commands = {}

function commands.seq(tag, i)
    received = received + 1
    local previous = last[tag] or 0
    if i ~= previous + 1 then out_of_order = out_of_order + 1 end
    last[tag] = i
end

function commands.seen(tag)
    return last[tag] or 0
end

function commands.stats()
    return received, out_of_order
end

function commands.add()
    if inside then overlaps = overlaps + 1 end
    inside = true
    local value = n
    -- Some yield-free work between the read and the write of `n`: a second
    -- thread in this VM would lose increments here.
    local spin = 0
    for k = 1, 20 do spin = spin + k end
    n = value + 1 + (spin - 210)
    inside = false
end

function commands.count()
    return n, overlaps
end

lunet.dispatch(function(source, command, ...)
    return commands[command](...)
end)
