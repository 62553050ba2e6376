-- An HTTP/1.1 keep-alive server for tests/reload.rs, which copies it and
-- rewrites VERSION (and BEFORE, code run by the main chunk) to reload it.
-- Every answer's body is the version of the script that serves it;
-- GET /slow takes 300 ms. While the host drains (lunet.on_shutdown) the
-- next answer carries `Connection: close` and the connection ends there.
local lunet = require "lunet"

local VERSION = "v1"
-- BEFORE

local draining = false
lunet.on_shutdown(function() draining = true end)

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local path = line:match("^GET (%S+) HTTP/1%.1$")
        repeat
            local header = sock:readline()
            if not header then return end
        until header == ""
        if path == "/slow" then lunet.sleep(300) end
        local body = VERSION .. "\n"
        sock:write("HTTP/1.1 200 OK\r\nContent-Length: ", #body, "\r\n",
            draining and "Connection: close\r\n" or "", "\r\n", body)
        if draining then return end
    end
end)
