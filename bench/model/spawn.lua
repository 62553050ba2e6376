-- Spawning a runtime with one module vs a plain service, one at a time:
--   target/release/lunet run bench/model/spawn.lua --modules bench/model/modules [kind=module|plain] [count=N]
-- Each spawn returns once the module is loaded (or the script's main chunk
-- returned); the services are killed after. Prints key=value lines: kind,
-- spawns, seconds, spawns_per_s.
local lunet = require "lunet"

local kind = lunet.getenv("kind", "module")
local count = tonumber(lunet.getenv("count", "5000"))
local options = kind == "module" and { modules = { "bench.pong" } }
    or { script = "../services/pong.lua" }

for _ = 1, 100 do lunet.kill(lunet.spawn(options)) end   -- warm up (and compile once)
local handles = {}
local started = lunet.now()
for i = 1, count do handles[i] = lunet.spawn(options) end
local elapsed = (lunet.now() - started) / 1000
for i = 1, count do lunet.kill(handles[i]) end
print("kind=" .. kind)
print(string.format("spawns=%d", count))
print(string.format("seconds=%.3f", elapsed))
print(string.format("spawns_per_s=%.0f", count / elapsed))
