-- tests/model.rs: the state interface, through ctx.state.
local M = lunet.module { name = "t.state", version = "1" }

M.sub("set", function(ctx, key, value)
    return ctx.state:set(key, value)
end)

M.sub("get", function(ctx, key)
    return ctx.state:get(key)
end)

M.sub("query", function(ctx, prefix)
    return ctx.state:query(prefix)
end)

M.sub("save", function(ctx)
    return ctx.state:save()
end)

-- The same object as lunet.state().
M.sub("same", function(ctx)
    return ctx.state == lunet.state()
end)

-- Sets `n` keys of `size` bytes; stops at the first error.
M.sub("fill", function(ctx, n, size)
    for i = 1, n do
        local ok, err = pcall(ctx.state.set, ctx.state, "fill:" .. i, string.rep("x", size))
        if not ok then return i, tostring(err) end
    end
    return n
end)

M.sub("storage", function(ctx)
    local ok, err = pcall(function() return ctx.storage end)
    return ok, tostring(err)
end)
return M
