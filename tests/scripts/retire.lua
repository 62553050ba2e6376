-- "retire": answers "retiring", then keeps its host busy for a moment (so
-- that connections accepted meanwhile queue up in the host's mailbox) and
-- makes the host exit. Any other line is echoed.
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        if line == "retire" then
            sock:write("retiring\n")
            lunet.sleep(0)                      -- flushes the answer
            local started = os.clock()
            while os.clock() - started < 0.3 do end
            lunet.exit()
        end
        sock:write(line, "\n")
    end
end)
