-- lunet run: lunet.spawn and lunet.self. Prints key=value lines for
-- tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

show("self", lunet.self())
local worker = lunet.spawn("svc_worker.lua", "first")
local name, handle = lunet.call(worker, "whoami")
show("args_and_self", name, handle == worker, worker ~= lunet.self())
local second = lunet.spawn { script = "svc_worker.lua", args = { "second", n = 1 } }
show("options_args", lunet.call(second, "whoami"))
show("syntax_error", pcall(lunet.spawn, "svc_bad_syntax.lua"))
show("main_error", pcall(lunet.spawn, "svc_bad_main.lua"))
show("missing", pcall(lunet.spawn, "svc_no_such_script.lua"))
show("no_script", pcall(lunet.spawn, { name = "x" }))
show("bad_argument", pcall(lunet.spawn, 42))
show("still_alive", lunet.call(worker, "ping"))
