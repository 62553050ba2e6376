-- lunet serve iso_memory.lua: issue 9, row 5. A connection sends:
--   "bomb"     -> allocates 8 MiB strings until an allocation fails;
--   "hog_spin" -> holds ~256 MiB, then loops until --slice-kill stops it;
--   "ping"     -> "pong".
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local line = sock:readline()
    if line == "ping" then return sock:write("pong\n") end
    local held = {}
    if line == "bomb" then
        while true do held[#held + 1] = string.rep("b", 8 * 1024 * 1024) end
    elseif line == "hog_spin" then
        for i = 1, 256 do held[i] = string.rep("h", 1024 * 1024) .. i end
        sock:write("holding\n")
        while true do end
    end
end)
