-- Two sessions write to one slow socket: both must be woken when the peer
-- reads, each finishing with its own end marker.
local lunet = require "lunet"

local CHUNK = string.rep("x", 64 * 1024)

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local function writer(name)
        for _ = 1, 64 do                      -- 4 MiB each, past the high-water mark
            if not sock:write(CHUNK) then return end
        end
        sock:write("\nEND-" .. name .. "\n")
    end
    local finished = 0
    lunet.fork(function() writer("A"); finished = finished + 1 end)
    writer("B")
    finished = finished + 1
    while finished < 2 do lunet.sleep(5) end
end)
