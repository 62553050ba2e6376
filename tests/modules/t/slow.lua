-- Takes a while to load (tests/model.rs: Subs that come meanwhile wait).
local M = lunet.module { name = "t.slow", version = "1" }
lunet.sleep(50)
M.event("up")
M.sub("hello", function(ctx) return "hello after loading" end)
M.sub("fire", function(ctx) return lunet.fire("t.slow.up", "fired") end)
return M
