-- tests/model.rs: the state interface. `phase=save` sets and saves;
-- `phase=load` (a second `lunet run` with the same --data) reads it back.
-- Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local function sub(name) return lunet.sub("t.state", name, "1") end

local phase = lunet.getenv("phase")
local rt = lunet.spawn { modules = { "t.state" }, name = "keeper", state = true }

if phase == "save" then
    report("set", lunet.call(rt, sub("set"), "user", "alice"))
    lunet.call(rt, sub("set"), "users:1", { name = "ann", tags = { "a", "b" } })
    lunet.call(rt, sub("set"), "users:2", { name = "bob" })
    lunet.call(rt, sub("set"), "continuation", lunet.sub("t.state", "get"))
    lunet.call(rt, sub("set"), "gone", 1)
    lunet.call(rt, sub("set"), "gone", nil)
    report("get", lunet.call(rt, sub("get"), "user"))
    local users = lunet.call(rt, sub("query"), "users:")
    report("query", users["users:1"].name, users["users:1"].tags[2], users["users:2"].name, users.user)
    local n = 0
    for _ in pairs(lunet.call(rt, sub("query"))) do n = n + 1 end
    report("query_all", n)
    report("same", lunet.call(rt, sub("same")))
    report("storage_undeclared", lunet.call(rt, sub("storage")))
    report("not_copyable", pcall(lunet.call, rt, sub("set"), "f", {}, print))
    report("function_value", pcall(lunet.call, rt, sub("set"), "f", print))
    report("save", lunet.call(rt, sub("save")))
    -- After the save, a change that is not saved: it must not be read back.
    lunet.call(rt, sub("set"), "user", "changed")
    -- A runtime without a name keeps its state but cannot save it.
    local nameless = lunet.spawn { modules = { "t.state" }, state = true }
    lunet.call(nameless, sub("set"), "k", 1)
    report("nameless_get", lunet.call(nameless, sub("get"), "k"))
    report("nameless_save", pcall(lunet.call, nameless, sub("save")))
    -- Not declared: a sandbox, a trusted runtime, the first service.
    local plain = lunet.spawn { modules = { "t.state" } }
    report("undeclared_sandbox", pcall(lunet.call, plain, sub("get"), "user"))
    local trusted = lunet.spawn { modules = { "t.state" }, trusted = true }
    report("undeclared_trusted", pcall(lunet.call, trusted, sub("get"), "user"))
    report("undeclared_main", pcall(lunet.state))
    -- Declared through caps, as the other capabilities.
    local capped = lunet.spawn { modules = { "t.state" }, caps = { state = true } }
    report("caps_state", lunet.call(capped, sub("set"), "x", 1), lunet.call(capped, sub("get"), "x"))
    -- A sandbox cannot grant what it does not hold.
    local parent = lunet.spawn { script = "model_spawner.lua", caps = { spawn = true } }
    report("grant", lunet.call(parent, "spawn", { modules = { "t.state" }, state = true }))
    -- A state is bounded by the runtime's memory.
    local small = lunet.spawn { modules = { "t.state" }, state = true, memory = 4 * 1024 * 1024 }
    report("over_quota", lunet.call(small, sub("fill"), 10, 1024 * 1024))
else
    report("restored", lunet.call(rt, sub("get"), "user"))
    local users = lunet.call(rt, sub("query"), "users:")
    report("restored_query", users["users:1"].name, users["users:1"].tags[1], users["users:2"].name)
    report("restored_reference", tostring(lunet.call(rt, sub("get"), "continuation")))
    report("restored_gone", lunet.call(rt, sub("get"), "gone"))
    -- Another name starts empty.
    local other = lunet.spawn { modules = { "t.state" }, name = "other", state = true }
    report("other_name", lunet.call(other, sub("get"), "user"))
end
lunet.exit()
