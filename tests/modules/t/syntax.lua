local M = lunet.module { name = "t.syntax", version = "1" }
M.sub("broken", function(ctx)
    return = 1
end)
return M
