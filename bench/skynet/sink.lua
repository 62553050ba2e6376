-- The receiving side of skynet's send.lua: counts messages and notes when
-- the first and the `expected`-th arrived (skynet.hpc(), ns).
local skynet = require "skynet"

local count, first, last = 0, nil, nil
skynet.start(function()
    skynet.dispatch("lua", function(_, _, command, expected)
        if command == "result" then
            while count < expected do skynet.sleep(1) end
            skynet.ret(skynet.pack(count, last - first))
            return
        end
        count = count + 1
        if count == 1 then first = skynet.hpc() end
        last = skynet.hpc()
    end)
end)
