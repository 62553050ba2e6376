local M = lunet.module { name = "t.b", version = "1", depends = { "t.c" } }
return M
