local M = lunet.module { name = "t.upvalue", version = "1" }
local secret = "kept in a local"
M.sub("leaks", function(ctx)
    return secret
end)
return M
