local M = lunet.module { name = "t.noversion" }
return M
