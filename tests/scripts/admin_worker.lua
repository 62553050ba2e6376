-- The worker of admin.lua: "echo" answers its argument, "spin" keeps its
-- worker thread busy for 3 s in one slice.
local lunet = require "lunet"

lunet.dispatch(function(_, command, value)
    if command == "spin" then
        local started = lunet.now()
        while lunet.now() - started < 3000 do end
        return
    end
    return value
end)
