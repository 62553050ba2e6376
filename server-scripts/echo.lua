-- Line echo: every line a client sends comes back to it.
--   lunet serve server-scripts/echo.lua listen=127.0.0.1:7001
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen", "127.0.0.1:7000"), function(sock)
    while true do
        local line, err = sock:readline()     -- yields until a line arrives
        if not line then return end           -- err: "closed", "timeout", "too long", ...
        sock:write(line, "\n")                -- yields only if the peer is slow
    end
end)
