-- A service of a cluster node (tests/cluster.rs), sandboxed with only the
-- cluster capability: takes the cluster name it is given and answers.
local lunet = require "lunet"
local name, group = ...
lunet.cluster.register(name)
if group then lunet.group(group):join() end
local tags = {} -- what group sends brought

-- Per sender: the last sequence number a call or a send carried.
local last_call, last_send = {}, {}
local out_of_order = {}

local function next_in(order, from, n)
    local expected = (order[from] or 0) + 1
    if n ~= expected then
        out_of_order[#out_of_order + 1] = string.format("%s: %d after %d", from, n, expected - 1)
    end
    order[from] = n
end

lunet.dispatch(function(_, op, ...)
    if op == "echo" then
        return ...
    elseif op == "seq" then
        local from, n = ...
        next_in(last_call, from, n)
        return n
    elseif op == "sent" then
        local from, n = ...
        next_in(last_send, from, n)
    elseif op == "seen" then
        local from = ...
        return last_send[from] or 0, table.concat(out_of_order, "; ")
    elseif op == "sleep" then
        lunet.log("info", name .. " sleeps")
        lunet.sleep(tonumber((...)))
        return "slept"
    elseif op == "fail" then
        error("boom from " .. name)
    elseif op == "tagged" then
        tags[(...)] = true
    elseif op == "has" then
        return tags[(...)] == true
    elseif op == "relay" then
        -- A remote reference that came as a value: call through it.
        local ref = ...
        return tostring(ref), lunet.call(ref, "where")
    elseif op == "where" then
        return lunet.cluster.node()
    elseif op == "size" then
        return #(...)
    elseif op == "quit" then
        lunet.fork(lunet.exit) -- after this answer
        return "quitting"
    end
end)
