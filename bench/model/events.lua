-- An event fired to `attached` runtimes that attached to it from outside:
-- deliveries per second, from the first fire to the last delivery.
--   target/release/lunet run bench/model/events.lua --modules bench/model/modules [attached=1000] [fires=100]
-- Prints key=value lines: attached, fires, deliveries, seconds,
-- deliveries_per_s.
local lunet = require "lunet"

local attached = tonumber(lunet.getenv("attached", "1000"))
local fires = tonumber(lunet.getenv("fires", "100"))

local ticker = lunet.spawn { modules = { "bench.ticker" } }
local done, waiter = 0, nil
lunet.dispatch(function(_, message)
    if message == "done" then
        done = done + 1
        if done == attached and waiter then lunet.wakeup(waiter) end
    end
end)
local watch = lunet.sub("bench.listener", "watch", "1")
for _ = 1, attached do
    local listener = lunet.spawn { modules = { "bench.listener" } }
    lunet.call(listener, watch, ticker, fires, lunet.self())
end

local started = lunet.now()
lunet.call(ticker, lunet.sub("bench.ticker", "fire"), fires)
if done < attached then
    waiter = coroutine.running()
    lunet.wait()
end
local elapsed = (lunet.now() - started) / 1000
print(string.format("attached=%d", attached))
print(string.format("fires=%d", fires))
print(string.format("deliveries=%d", attached * fires))
print(string.format("seconds=%.3f", elapsed))
print(string.format("deliveries_per_s=%.0f", attached * fires / elapsed))
lunet.exit()
