-- skynet's side of bench/services/idle.lua: VmRSS before and after
-- launching `count` services that only set a dispatch function.
-- Config key: count. Prints services, rss_before_kb, rss_after_kb,
-- kb_per_service, lua_kb_per_service.
local skynet = require "skynet"
require "skynet.manager"

local count = tonumber(skynet.getenv("count") or "10000")

local function rss_kb()
    local file = assert(io.open("/proc/self/status"))
    local status = file:read("a")
    file:close()
    return tonumber(status:match("VmRSS:%s*(%d+)"))
end

skynet.start(function()
    local handles = {}
    handles[1] = skynet.newservice("idle_service")    -- warm up
    collectgarbage()
    local before = rss_kb()
    for i = 2, count + 1 do
        handles[i] = skynet.newservice("idle_service")
    end
    collectgarbage()
    skynet.sleep(10)        -- let the workers settle (100 ms)
    local after = rss_kb()
    local lua_bytes = skynet.call(handles[2], "lua", "memory")
    print(string.format("services=%d", count))
    print(string.format("rss_before_kb=%d", before))
    print(string.format("rss_after_kb=%d", after))
    print(string.format("kb_per_service=%.1f", (after - before) / count))
    print(string.format("lua_kb_per_service=%.1f", lua_bytes / 1024))
    io.stdout:flush()
    skynet.abort()
end)
