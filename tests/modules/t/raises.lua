local M = lunet.module { name = "t.raises", version = "1" }
local function deeper()
    error("the module refused to load")
end
deeper()
return M
