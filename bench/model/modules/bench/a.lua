-- bench/model.sh: the first of three modules of a runtime (the memory
-- row), each about the size of a small real module: a key-value store
-- that tells who listens when a key changes.
local M = lunet.module { name = "bench.a", version = "1" }
M.event("changed")
STORE = {}
M.sub("put", function(ctx, key, value)
    STORE[key] = value
    lunet.fire("bench.a.changed", key)
    return true
end)
M.sub("get", function(ctx, key)
    return STORE[key]
end)
M.sub("memory", function(ctx)
    return collectgarbage("count") * 1024
end)
return M
