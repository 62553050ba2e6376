local M = lunet.module { name = "t.c", version = "1", depends = { "t.a" } }
return M
