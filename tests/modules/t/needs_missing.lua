local M = lunet.module { name = "t.needs_missing", version = "1", depends = { "t.util", "t.nowhere" } }
return M
