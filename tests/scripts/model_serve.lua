-- tests/model.rs: a runtime named "greeter" (module live.greeter, from a
-- --modules directory the test rewrites), and a line protocol to it:
-- "greet", "remember WORD", "recall".
local lunet = require "lunet"

local greeter = lunet.query("greeter")
    or lunet.spawn { modules = { "live.greeter" }, name = "greeter", state = true }

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local command, word = line:match("^(%S+)%s*(.*)$")
        local ok, answer = pcall(lunet.call, greeter, lunet.sub("live.greeter", command), word)
        sock:write(tostring(answer):gsub("\n.*", ""), "\n")
    end
end)
