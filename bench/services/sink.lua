-- The receiving side of send.lua: counts messages and notes when the first
-- and the `expected`-th arrived (lunet.now(), ms).
local lunet = require "lunet"

local count, first, last = 0, nil, nil
lunet.dispatch(function(source, command, expected)
    if command == "result" then
        -- Answer once every message has arrived.
        while count < expected do lunet.sleep(1) end
        return count, last - first
    end
    count = count + 1
    if count == 1 then first = lunet.now() end
    last = lunet.now()
end)
