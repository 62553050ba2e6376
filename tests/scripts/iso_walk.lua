-- lunet run iso_walk.lua: a sandboxed service with no caps and a trusted one
-- walk the lunet module (iso_walker.lua). Prints "sandboxed: LINE" and
-- "trusted: LINE" for each function, then whether each walker exited.
local lunet = require "lunet"

for _, label in ipairs { "sandboxed", "trusted" } do
    local walker = lunet.spawn { script = "iso_walker.lua", trusted = label == "trusted" }
    local report = lunet.call(walker, "walk")
    for line in report:gmatch("[^\n]+") do print(label .. ": " .. line) end
    while lunet.send(walker, "noop") do lunet.sleep(1) end
    print(label .. ": exit ungated ok")
end
lunet.exit()
