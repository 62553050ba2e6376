-- bench/model.sh: the Sub side of the call row; answers what it is given,
-- as bench/services/pong.lua does for a plain call.
local M = lunet.module { name = "bench.pong", version = "1" }
M.sub("echo", function(ctx, ...)
    return ...
end)
M.sub("memory", function(ctx)
    return collectgarbage("count") * 1024
end)
return M
