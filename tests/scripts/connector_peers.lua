-- Line echo that logs the address of every client it accepts, so a test can
-- see which local address (`lunet load --source`) a connection came from.
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    lunet.log("info", "peer " .. tostring(sock:peer()))
    while true do
        local line = sock:readline()
        if not line then return end
        sock:write(line, "\n")
    end
end)
