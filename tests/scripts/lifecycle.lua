-- "work MS": answers "started", sleeps MS milliseconds, answers "done".
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    local line = sock:readline()
    local ms = tonumber(line and line:match("^work (%d+)$"))
    if not ms then
        sock:write("?\n")
        return
    end
    sock:write("started\n")
    lunet.sleep(ms)
    sock:write("done\n")
end)
