-- lunet.on_shutdown for tests/reload.rs: hooks that log, yield, fail, and
-- register another hook while the host already drains. Lines are echoed.
local lunet = require "lunet"

lunet.on_shutdown(function()
    lunet.log("info", "hook one ran")
    lunet.sleep(10)
    lunet.log("info", "hook one slept")
    lunet.on_shutdown(function() lunet.log("info", "late hook ran") end)
end)
lunet.on_shutdown(function() error("hook two fails") end)

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        sock:write(line, "\n")
    end
end)
