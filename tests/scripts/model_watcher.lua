-- Attaches to an event of another runtime when told to (tests/model.rs).
local lunet = require "lunet"
local seen = {}
lunet.dispatch(function(_, command, target)
    if command == "watch" then
        return lunet.attach(target, "t.counter.tick", function(from, n) seen[#seen + 1] = n end)
    elseif command == "seen" then
        return table.concat(seen, ",")
    end
end)
