-- The answering side of skynet's pingpong.lua: returns what it is given.
local skynet = require "skynet"

skynet.start(function()
    skynet.dispatch("lua", function(_, _, ...)
        skynet.ret(skynet.pack(...))
    end)
end)
