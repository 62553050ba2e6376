-- lunet run: what a VM makes on first use (standard libraries, lunet's
-- members) looks to a script as if it had been there from the start, in a
-- trusted and in a sandboxed service. Prints trusted.KEY=VALUE and
-- sandboxed.KEY=VALUE lines for tests/services.rs.
local lunet = require "lunet"

for _, trusted in ipairs { true, false } do
    local child = lunet.spawn { script = "svc_first_use_checks.lua", trusted = trusted }
    local report = lunet.call(child, "run")
    local label = trusted and "trusted" or "sandboxed"
    for line in report:gmatch("[^\n]+") do print(label .. "." .. line) end
end
lunet.exit()
