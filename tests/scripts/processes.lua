-- Each line is answered with the server process's pid, then the line: the
-- test sees which of the --processes served a connection.
local lunet = require "lunet"

local stat = assert(io.open("/proc/self/stat"))
local pid = stat:read("n")
stat:close()

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        sock:write(pid, " ", line, "\n")
    end
end)
