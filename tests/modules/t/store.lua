-- tests/model.rs: the storage interface, through ctx.storage.
local M = lunet.module { name = "t.store", version = "1" }

M.sub("put", function(ctx, k, v)
    local db = ctx.storage
    assert(db:exec("create table if not exists kv (k text primary key, v text)"))
    return db:exec("insert or replace into kv (k, v) values (?, ?)", k, v)
end)

M.sub("get", function(ctx, k)
    local rows = assert(ctx.storage:query("select v from kv where k = ?", k))
    return rows[1] and rows[1].v
end)

-- A storage call where the coroutine cannot yield raises: every call yields.
M.sub("in_sort", function(ctx)
    local t = { 2, 1 }
    local ok, err = pcall(table.sort, t, function(a, b)
        ctx.storage:query("select 1")
        return a < b
    end)
    return ok, tostring(err)
end)

M.sub("state", function(ctx)
    local ok, err = pcall(function() return ctx.state end)
    return ok, tostring(err)
end)
return M
