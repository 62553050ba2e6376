-- tests/cluster.rs: a pushed module whose dependency is pushed too.
local M = lunet.module { name = "c.polite", version = "1.0", depends = { "c.greet" } }
greet = require "c.greet"

M.sub("hello", function(ctx, who)
    return "well, " .. lunet.call(lunet.self(), lunet.sub("c.greet", "hello"), who)
end)
return M
