-- The answering side of pingpong.lua: returns what it is given.
local lunet = require "lunet"
lunet.dispatch(function(source, ...)
    return ...
end)
