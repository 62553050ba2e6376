-- Writes 800 chunks of 64 KiB (50 MiB) to every client as fast as the
-- socket takes them. Chunk i is "%07d\n" of i repeated 8192 times, so the
-- client can check content and order. A slow reader must make `write`
-- yield at the high-water mark instead of growing the server's memory.
local lunet = require "lunet"

local CHUNKS = 800
local REPEAT = 65536 // 8

lunet.listen(lunet.getenv("listen"), function(sock)
    for i = 1, CHUNKS do
        local ok = sock:write(string.rep(string.format("%07d\n", i), REPEAT))
        if not ok then
            return
        end
    end
end)
