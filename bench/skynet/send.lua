-- skynet's side of bench/services/send.lua: one-way skynet.send bursts
-- from one sender to one receiver, the rate counted at the receiver.
-- Config keys: messages, burst. Prints messages, seconds, sends_per_s.
local skynet = require "skynet"
require "skynet.manager"

local messages = tonumber(skynet.getenv("messages") or "2000000")
local burst = tonumber(skynet.getenv("burst") or "10000")
local send = skynet.send

skynet.start(function()
    local sink = skynet.newservice("sink")
    local sent = 0
    while sent < messages do
        for i = 1, burst do send(sink, "lua", "msg", i) end
        sent = sent + burst
        -- As lunet's lunet.sleep(0): let the receiver keep up.
        skynet.yield()
    end
    local count, ns = skynet.call(sink, "lua", "result", messages)
    local seconds = ns / 1e9
    print(string.format("messages=%d", count))
    print(string.format("seconds=%.3f", seconds))
    print(string.format("sends_per_s=%.0f", count / seconds))
    io.stdout:flush()
    skynet.abort()
end)
