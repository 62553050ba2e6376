-- A sandboxed service that spawns what it is asked to (tests/model.rs).
local lunet = require "lunet"
lunet.dispatch(function(_, command, options)
    if command == "spawn" then
        local ok, err = pcall(lunet.spawn, options)
        return ok, (tostring(err):gsub("\n.*", ""))
    end
end)
