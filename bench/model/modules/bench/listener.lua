-- bench/model.sh: an attached runtime of the event row. "watch" attaches
-- to the ticker from outside and tells `report` once `target` ticks came.
local M = lunet.module { name = "bench.listener", version = "1" }
M.sub("watch", function(ctx, ticker, target, report)
    local seen = 0
    return lunet.attach(ticker, "bench.ticker.tick", function(from, i)
        seen = seen + 1
        if seen == target then lunet.send(report, "done") end
    end)
end)
return M
