-- bench/model.sh: the firing side of the event row.
local M = lunet.module { name = "bench.ticker", version = "1" }
M.event("tick")
M.sub("fire", function(ctx, n)
    for i = 1, n do lunet.fire("bench.ticker.tick", i) end
    return n
end)
return M
