local M = lunet.module { name = "t.other", version = "1" }
return M
