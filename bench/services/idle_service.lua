-- An idle service: it only sets a dispatch function ("memory" reports the
-- Lua heap of this VM, in bytes).
local lunet = require "lunet"
lunet.dispatch(function(source, command)
    if command == "memory" then return collectgarbage("count") * 1024 end
end)
