-- tests/model.rs: Sub calls that cannot run raise at the caller; the
-- receiver only logs. Prints key=value lines.
local lunet = require "lunet"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
local report = dofile(here .. "model_report.lua")


local rt = lunet.spawn { modules = { "t.echo" }, name = "target" }
local echo = lunet.sub("t.echo", "echo")

report("unknown_module", pcall(lunet.call, rt, lunet.sub("t.nowhere", "x", "1.0")))
report("wrong_version", pcall(lunet.call, rt, lunet.sub("t.echo", "echo", "9.9")))
report("unknown_sub", pcall(lunet.call, rt, lunet.sub("t.echo", "nothing", "1.0")))
report("not_a_runtime", pcall(lunet.call, lunet.self(), echo))
report("function_argument", pcall(lunet.call, rt, echo, function() end))
report("coroutine_argument", pcall(lunet.send, rt, echo, coroutine.create(print)))
report("answer_not_copyable", pcall(lunet.call, rt, lunet.sub("t.echo", "give_function")))
-- A send cannot raise for what the receiver refuses: it logs a line.
report("send_refused", lunet.send(rt, lunet.sub("t.echo", "nothing", "1.0"), 1))
-- Early refusals, at lunet.sub.
report("sub_unknown_name", pcall(lunet.sub, "t.echo", "nothing"))
report("sub_unknown_module", pcall(lunet.sub, "t.nowhere", "x"))
report("sub_bad_module_name", pcall(lunet.sub, "../etc", "x", "1"))
report("sub_bad_version", pcall(lunet.sub, "t.echo", "x", ""))
report("function_still_refused", pcall(lunet.send, rt, print))
-- The receiver lives on.
report("alive", pcall(lunet.call, rt, lunet.sub("t.echo", "twice"), 4))
lunet.sleep(20)
lunet.exit()
