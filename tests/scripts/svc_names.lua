-- lunet run: lunet.register / lunet.query, names wherever handles go.
-- Prints key=value lines for tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

show("query_unknown", lunet.query("main"))
show("register", lunet.register("main"))
show("query_self", lunet.query("main") == lunet.self())
show("register_again", pcall(lunet.register, "main"))
show("register_empty", pcall(lunet.register, ""))

local worker = lunet.spawn { script = "svc_worker.lua", name = "worker", args = { "named" } }
show("query_spawned", lunet.query("worker") == worker)
show("call_by_name", lunet.call("worker", "whoami") == "named")
show("send_by_name", lunet.send("worker", "note"))
show("notes", lunet.call("worker", "notes"))
show("duplicate_spawn", pcall(lunet.spawn, { script = "svc_worker.lua", name = "worker" }))
show("still_first", lunet.query("worker") == worker)

-- A name the worker takes for itself from inside.
show("register_taken_by_other", pcall(lunet.call, "worker", "echo", pcall(lunet.register, "worker")))

-- The name goes away with its service and can be taken again.
show("kill_by_name", lunet.kill("worker"))
for _ = 1, 1000 do
    if not lunet.query("worker") then break end
    lunet.sleep(1)
end
show("query_after_exit", lunet.query("worker"))
local again = lunet.spawn { script = "svc_worker.lua", name = "worker", args = { "second" } }
show("reuse", lunet.query("worker") == again and again ~= worker, lunet.call("worker", "whoami"))
