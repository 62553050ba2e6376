-- A wrong echo server: it answers every line reversed, so the connector's
-- echo profile must count protocol errors.
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        sock:write(line:reverse(), "\n")
    end
end)
