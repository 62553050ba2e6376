-- What the tests/scripts/model_*.lua share: `report(key, ...)` prints
-- "key=v1 v2 ..." (each value through tostring, an error's first line
-- only), `settle(done)` waits (bounded) until `done()` holds.
--   local report, settle = dofile(<this script's directory> .. "model_report.lua")
local lunet = require "lunet"

local function report(key, ...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    print(key .. "=" .. table.concat(parts, " ", 1, parts.n):gsub("\n.*", ""))
end

-- Deliveries of events and exits are messages: they come a little later.
local function settle(done)
    for _ = 1, 500 do
        if done() then return true end
        lunet.sleep(2)
    end
    return false
end

return report, settle
