-- One-way `lunet.send` bursts from one sender to one receiver:
--   target/release/lunet run bench/services/send.lua [messages=N] [burst=B]
-- The rate is counted at the receiver, from its first to its last message.
-- Prints key=value lines: messages, seconds, sends_per_s.
local lunet = require "lunet"

local messages = tonumber(lunet.getenv("messages", "2000000"))
local burst = tonumber(lunet.getenv("burst", "10000"))
local send = lunet.send

local sink = lunet.spawn("sink.lua")
local sent = 0
while sent < messages do
    for i = 1, burst do send(sink, "msg", i) end
    sent = sent + burst
    -- Let the receiver keep up (a burst is queued at once; the next one
    -- starts when this session gets the worker again).
    lunet.sleep(0)
end
local count, ms = lunet.call(sink, "result", messages)
local seconds = ms / 1000
print(string.format("messages=%d", count))
print(string.format("seconds=%.3f", seconds))
print(string.format("sends_per_s=%.0f", count / seconds))
