-- lunet run: a spawned service is sandboxed unless trusted=true. Prints
-- key=value lines for tests/services.rs: sandboxed.* and trusted.*.
local lunet = require "lunet"

local bytecode = string.dump(function() return 42 end)
local sandboxed = lunet.spawn("svc_worker.lua", "sandboxed")
local trusted = lunet.spawn { script = "svc_worker.lua", trusted = true, args = { "trusted" } }

for label, handle in pairs({ sandboxed = sandboxed, trusted = trusted }) do
    local report = lunet.call(handle, "environment", bytecode)
    local keys = {}
    for key in pairs(report) do keys[#keys + 1] = key end
    table.sort(keys)
    for _, key in ipairs(keys) do
        print(label .. "." .. key .. "=" .. tostring(report[key]):gsub("\n", "\\n"))
    end
end
-- The command-line script itself is trusted.
print("main.os_execute=" .. type(os.execute))
