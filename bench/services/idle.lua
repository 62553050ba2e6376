-- Memory of an idle service: VmRSS before and after spawning `count`
-- services that only set a dispatch function.
--   target/release/lunet run bench/services/idle.lua [count=N] [trusted=1]
-- Prints key=value lines: services, rss_before_kb, rss_after_kb,
-- kb_per_service, lua_kb_per_service.
local lunet = require "lunet"

local count = tonumber(lunet.getenv("count", "10000"))
local trusted = lunet.getenv("trusted", "0") == "1"

local function rss_kb()
    local status = assert(lunet.fs.read("/proc/self/status"))
    return tonumber(status:match("VmRSS:%s*(%d+)"))
end

local handles = {}
handles[1] = lunet.spawn { script = "idle_service.lua", trusted = trusted }   -- warm up
collectgarbage()
local before = rss_kb()
for i = 2, count + 1 do
    handles[i] = lunet.spawn { script = "idle_service.lua", trusted = trusted }
end
collectgarbage()
lunet.sleep(100)          -- let the workers settle
local after = rss_kb()
local lua_bytes = lunet.call(handles[2], "memory")
print(string.format("services=%d", count))
print(string.format("rss_before_kb=%d", before))
print(string.format("rss_after_kb=%d", after))
print(string.format("kb_per_service=%.1f", (after - before) / count))
print(string.format("lua_kb_per_service=%.1f", lua_bytes / 1024))
