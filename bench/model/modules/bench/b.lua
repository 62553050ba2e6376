-- bench/model.sh: the second module of the memory row: counters by name,
-- with a total.
local M = lunet.module { name = "bench.b", version = "1", depends = { "bench.a" } }
COUNTS, TOTAL = {}, 0
M.sub("add", function(ctx, name, n)
    n = n or 1
    COUNTS[name] = (COUNTS[name] or 0) + n
    TOTAL = TOTAL + n
    return COUNTS[name]
end)
M.sub("total", function(ctx)
    return TOTAL
end)
return M
