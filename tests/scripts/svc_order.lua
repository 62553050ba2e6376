-- lunet run: two senders each send 100,000 messages to one receiver; every
-- 1,000th message is preceded by a call that must see exactly the messages
-- sent before it. Prints key=value lines for tests/services.rs.
local lunet = require "lunet"

local count = tonumber(lunet.getenv("count", "100000"))
local receiver = lunet.spawn("svc_receiver.lua")
local senders = { lunet.spawn("svc_worker.lua", "a"), lunet.spawn("svc_worker.lua", "b") }

local main = coroutine.running()
local pending = #senders
local mismatches = {}
for index, sender in ipairs(senders) do
    lunet.fork(function()
        local ok, result = pcall(lunet.call, sender, "flood", receiver, "tag" .. index, count, 1000)
        mismatches[index] = ok and result or ("error: " .. tostring(result))
        pending = pending - 1
        if pending == 0 then lunet.wakeup(main) end
    end)
end
lunet.wait()

local received, out_of_order = lunet.call(receiver, "stats")
print("mismatches_1=" .. tostring(mismatches[1]))
print("mismatches_2=" .. tostring(mismatches[2]))
print("received=" .. received)
print("out_of_order=" .. out_of_order)
print("seen_1=" .. lunet.call(receiver, "seen", "tag1"))
print("seen_2=" .. lunet.call(receiver, "seen", "tag2"))
