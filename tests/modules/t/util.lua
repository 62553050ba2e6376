local M = lunet.module { name = "t.util", version = "0.1" }
function M.twice(x) return x * 2 end
HIDDEN = "util's own"
M.sub("hidden", function(ctx) return HIDDEN end)
return M
