-- tests/model.rs: the storage interface. Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report, settle = dofile(here .. "model_report.lua")

local function sub(name) return lunet.sub("t.store", name, "1") end

local rt = lunet.spawn { modules = { "t.store" }, storage = "kept.sqlite" }
report("put", lunet.call(rt, sub("put"), "a", "one"))
report("get", lunet.call(rt, sub("get"), "a"))
report("yields", lunet.call(rt, sub("in_sort")))
report("state_undeclared", lunet.call(rt, sub("state")))
local named = lunet.spawn { modules = { "t.store" }, name = "archive", storage = true }
report("named_put", lunet.call(named, sub("put"), "b", "two"))
report("separate", lunet.call(named, sub("get"), "a"), lunet.call(rt, sub("get"), "b"))
report("unnamed_true", pcall(lunet.spawn, { modules = { "t.store" }, storage = true }))
report("bad_storage", pcall(lunet.spawn, { modules = { "t.store" }, storage = 5 }))
report("outside_storage", pcall(lunet.spawn, { modules = { "t.store" }, storage = "../x.sqlite" }))
report("absolute_storage", pcall(lunet.spawn, { modules = { "t.store" }, storage = "/tmp/x.sqlite" }))
report("nested_storage", lunet.call(lunet.spawn { modules = { "t.store" }, storage = "deeper/n.sqlite" },
    sub("put"), "k", "v"))
local plain = lunet.spawn { modules = { "t.store" } }
report("undeclared", pcall(lunet.call, plain, sub("get"), "a"))
report("undeclared_main", pcall(lunet.storage))
-- A script can reach its own storage as well.
local scripted = lunet.spawn { script = "model_storage_user.lua", storage = "scripted.sqlite" }
report("scripted", lunet.call(scripted, "count"))
-- It runs no modules: a Sub is refused at once (nothing to wait for).
report("scripted_sub", pcall(lunet.call, scripted, sub("get"), "a"))
lunet.exit()
