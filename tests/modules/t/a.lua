local M = lunet.module { name = "t.a", version = "1", depends = { "t.b" } }
return M
