-- Ping-pong `lunet.call` between two services, one call at a time:
--   target/release/lunet run bench/services/pingpong.lua [calls=N] [seconds=S]
-- Prints key=value lines: calls, seconds, calls_per_s.
local lunet = require "lunet"

local calls = tonumber(lunet.getenv("calls", "1000000"))
local seconds = tonumber(lunet.getenv("seconds", "5"))
local call = lunet.call

local pong = lunet.spawn("pong.lua")
for i = 1, 10000 do call(pong, i) end          -- warm up

local started = lunet.now()
local deadline = started + seconds * 1000
local done = 0
while done < calls do
    for i = 1, 1000 do call(pong, i) end
    done = done + 1000
    if lunet.now() >= deadline then break end
end
local elapsed = (lunet.now() - started) / 1000
print(string.format("calls=%d", done))
print(string.format("seconds=%.3f", elapsed))
print(string.format("calls_per_s=%.0f", done / elapsed))
