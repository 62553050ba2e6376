-- A Sub call vs a plain lunet.call with the same values, one at a time:
--   target/release/lunet run bench/model/subcall.lua --modules bench/model/modules [kind=sub|plain] [calls=N] [seconds=S]
-- Prints key=value lines: kind, calls, seconds, calls_per_s.
local lunet = require "lunet"

local kind = lunet.getenv("kind", "sub")
local calls = tonumber(lunet.getenv("calls", "1000000"))
local seconds = tonumber(lunet.getenv("seconds", "5"))
local call = lunet.call

local target, first
if kind == "sub" then
    target = lunet.spawn { modules = { "bench.pong" } }
    first = lunet.sub("bench.pong", "echo")
else
    target = lunet.spawn("../services/pong.lua")
    first = "echo"
end
for i = 1, 10000 do call(target, first, i) end          -- warm up

local started = lunet.now()
local deadline = started + seconds * 1000
local done = 0
while done < calls do
    for i = 1, 1000 do call(target, first, i) end
    done = done + 1000
    if lunet.now() >= deadline then break end
end
local elapsed = (lunet.now() - started) / 1000
print("kind=" .. kind)
print(string.format("calls=%d", done))
print(string.format("seconds=%.3f", elapsed))
print(string.format("calls_per_s=%.0f", done / elapsed))
