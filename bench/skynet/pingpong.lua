-- skynet's side of bench/services/pingpong.lua: ping-pong skynet.call
-- between two services, one call at a time (same shape as lunet's).
-- Config keys (bench/services.sh writes them): calls, seconds.
-- Prints key=value lines: calls, seconds, calls_per_s; then aborts skynet.
local skynet = require "skynet"
require "skynet.manager"

local calls = tonumber(skynet.getenv("calls") or "1000000")
local seconds = tonumber(skynet.getenv("seconds") or "5")
local call = skynet.call

skynet.start(function()
    local pong = skynet.newservice("pong")
    for i = 1, 10000 do call(pong, "lua", i) end          -- warm up
    local started = skynet.hpc()
    local deadline = started + seconds * 1e9
    local done = 0
    while done < calls do
        for i = 1, 1000 do call(pong, "lua", i) end
        done = done + 1000
        if skynet.hpc() >= deadline then break end
    end
    local elapsed = (skynet.hpc() - started) / 1e9
    print(string.format("calls=%d", done))
    print(string.format("seconds=%.3f", elapsed))
    print(string.format("calls_per_s=%.0f", done / elapsed))
    io.stdout:flush()
    skynet.abort()
end)
