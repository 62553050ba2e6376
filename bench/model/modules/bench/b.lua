-- bench/model.sh: one of three modules of a runtime (the memory row): a few
-- Subs and an event, about the size of a small real module.
local M = lunet.module { name = "bench.b", version = "1" }
M.event("changed")
STORE = {}
M.sub("put", function(ctx, key, value)
    STORE[key] = value
    lunet.fire("bench.b.changed", key)
    return true
end)
M.sub("get", function(ctx, key)
    return STORE[key]
end)
M.sub("count", function(ctx)
    local n = 0
    for _ in pairs(STORE) do n = n + 1 end
    return n
end)
M.sub("memory", function(ctx)
    return collectgarbage("count") * 1024
end)
return M
