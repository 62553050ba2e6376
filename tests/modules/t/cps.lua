-- tests/model.rs: continuation-passing across runtimes. "ask" answers with
-- the continuation it was given and a value for it; "done" keeps what it
-- gets, "result" returns it.
local M = lunet.module { name = "t.cps", version = "2.0" }

M.sub("ask", function(ctx, x, k)
    return k, x * 2, ctx.source
end)

M.sub("done", function(ctx, value, from)
    RESULT = { value = value, from = from, runner = lunet.self() }
    return true
end)

M.sub("result", function(ctx)
    return RESULT
end)

-- A Sub reference as a value: returned, and received.
M.sub("reference", function(ctx)
    return lunet.sub("t.cps", "done"), { k = lunet.sub("t.cps", "result") }
end)
return M
