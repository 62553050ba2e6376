-- "work MS": answers "started", sleeps MS milliseconds, answers "done".
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    local line = sock:readline()
    if not line then
        return
    end
    local ms = tonumber(line:match("^work (%d+)$"))
    if not ms then
        sock:write("?\n")
        return
    end
    sock:write("started\n")
    lunet.sleep(ms)
    sock:write("done\n")
end)
