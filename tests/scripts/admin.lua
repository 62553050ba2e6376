-- A host for tests/admin.rs. Each host spawns a worker service; a line
-- on a connection: "spin" makes the worker run a slice of 3 s (a service
-- busy in a long slice), "handle" answers the host's and the worker's
-- handles, "call H" calls service H and answers "answered" or its
-- error, "work MS" answers "started", then "done" after MS ms, and
-- anything else is echoed through a call to the worker (messages move).
local lunet = require "lunet"

local worker = lunet.spawn("admin_worker.lua")

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local ms = tonumber(line:match("^work (%d+)$"))
        if line == "spin" then
            lunet.send(worker, "spin")
            sock:write("spinning\n")
        elseif line:match("^call %d+$") then
            -- A call to any service, the console's included.
            local ok, err = pcall(lunet.call, tonumber(line:match("%d+")), "hello")
            sock:write(ok and "answered" or ("error " .. tostring(err)), "\n")
        elseif line == "handle" then
            sock:write(lunet.self(), " ", worker, "\n")
        elseif ms then
            sock:write("started\n")
            lunet.sleep(ms)
            sock:write("done\n")
        else
            sock:write(lunet.call(worker, "echo", line), "\n")
        end
    end
end)
