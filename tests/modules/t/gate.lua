-- Loads only once the dict "model" holds "open" (tests/model.rs: what a
-- runtime keeps while it loads). Needs caps = {dicts = {"model"}}.
local M = lunet.module { name = "t.gate", version = "1" }
local flags = lunet.shared.dict("model")
while not flags:get("open") do lunet.sleep(1) end
COUNT = 0
M.sub("count", function(ctx) COUNT = COUNT + 1 return COUNT end)
return M
