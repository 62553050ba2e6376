-- An idle skynet service: it only sets a dispatch function ("memory"
-- reports the Lua heap of this VM, in bytes).
local skynet = require "skynet"

skynet.start(function()
    skynet.dispatch("lua", function(_, _, command)
        if command == "memory" then skynet.ret(skynet.pack(collectgarbage("count") * 1024)) end
    end)
end)
