-- A TLS server for tests: line echo ("quit" answers "bye" and closes), or
-- one HTTP/1.1 answer per request when a line starts with "GET ".
--
--   lunet serve tests/scripts/tls_server.lua listen=127.0.0.1:0 cert=FILE key=FILE [handshake_timeout=MS]
local lunet = require "lunet"

local tls = { cert = lunet.getenv("cert"), key = lunet.getenv("key") }
tls.handshake_timeout = tonumber(lunet.getenv("handshake_timeout", ""))

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), { tls = tls }, function(sock)
    while true do
        local line, err = sock:readline()
        if not line then
            lunet.log("info", "tls_server:", sock:peer(), err)
            return
        end
        if line:find("^GET ") then
            repeat
                local header = sock:readline()
                if not header then return end
            until header == ""
            local body = "hello over tls\n"
            sock:write("HTTP/1.1 200 OK\r\nContent-Length: ", #body, "\r\n\r\n", body)
        elseif line == "quit" then
            sock:write("bye\n")
            return
        else
            sock:write(line, "\n")
        end
    end
end)
