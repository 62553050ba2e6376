-- Memory per runtime with 3 modules (their code compiled once per process)
-- vs an idle plain service: VmRSS before and after spawning `count`.
--   target/release/lunet run bench/model/memory.lua --modules bench/model/modules [kind=modules|plain] [count=N]
-- Prints key=value lines: kind, runtimes, kb_per_runtime, lua_kb_per_runtime.
local lunet = require "lunet"

local kind = lunet.getenv("kind", "modules")
local count = tonumber(lunet.getenv("count", "5000"))
local options = kind == "modules" and { modules = { "bench.a", "bench.b", "bench.c" } }
    or { script = "../services/idle_service.lua" }

local function rss_kb()
    local status = assert(lunet.fs.read("/proc/self/status"))
    return tonumber(status:match("VmRSS:%s*(%d+)"))
end

local handles = { lunet.spawn(options) }   -- warm up: the modules compile here
collectgarbage()
local before = rss_kb()
for i = 2, count + 1 do handles[i] = lunet.spawn(options) end
collectgarbage()
lunet.sleep(100)
local after = rss_kb()
local lua_bytes
if kind == "modules" then
    lua_bytes = lunet.call(handles[2], lunet.sub("bench.a", "memory"))
else
    lua_bytes = lunet.call(handles[2], "memory")
end
print("kind=" .. kind)
print(string.format("runtimes=%d", count))
print(string.format("kb_per_runtime=%.1f", (after - before) / count))
print(string.format("lua_kb_per_runtime=%.1f", lua_bytes / 1024))
