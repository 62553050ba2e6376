-- tests/cluster.rs: a module no node has on disk; `lunet modules push`
-- stores it in the cluster, a node that spawns a runtime of it fetches it.
local M = lunet.module { name = "c.greet", version = "3.1" }

M.sub("hello", function(ctx, who)
    return "hello " .. who
end)
return M
