-- lunet run: several services hammer one counter service with "add"
-- messages at once; the count must be exact and no two sessions of the
-- counter may overlap. Prints key=value lines for tests/services.rs.
local lunet = require "lunet"

local senders = tonumber(lunet.getenv("senders", "4"))
local each = tonumber(lunet.getenv("each", "25000"))
local counter = lunet.spawn("svc_receiver.lua")

local main = coroutine.running()
local pending = senders
local failures = 0
for i = 1, senders do
    local sender = lunet.spawn("svc_worker.lua", "sender" .. i)
    lunet.fork(function()
        local ok = pcall(lunet.call, sender, "adds", counter, each)
        if not ok then failures = failures + 1 end
        pending = pending - 1
        if pending == 0 then lunet.wakeup(main) end
    end)
end
lunet.wait()

local n, overlaps = lunet.call(counter, "count")
print("expected=" .. senders * each)
print("count=" .. n)
print("overlaps=" .. overlaps)
print("failures=" .. failures)
