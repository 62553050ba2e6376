-- tests/model.rs: loading modules, and what fails the spawn. Prints
-- key=value lines (an error's first line, and whether it carries a
-- traceback).
local lunet = require "lunet"

local function spawn(key, options)
    local ok, err = pcall(lunet.spawn, options)
    if ok then
        print(key .. "=ok")
        return err
    end
    err = tostring(err)
    print(key .. "=" .. err:gsub("\n.*", ""))
    print(key .. "_traceback=" .. tostring(err:find("stack traceback:", 1, true) ~= nil))
end

spawn("unknown", { modules = { "t.nowhere" } })
spawn("cycle", { modules = { "t.a" } })
spawn("missing_dependency", { modules = { "t.needs_missing" } })
spawn("syntax", { modules = { "t.syntax" } })
spawn("raises", { modules = { "t.raises" } })
spawn("upvalue", { modules = { "t.upvalue" } })
spawn("misnamed", { modules = { "t.misnamed" } })
spawn("no_version", { modules = { "t.noversion" } })
spawn("undeclared", { modules = { "t.undeclared" } })
spawn("bad_name", { modules = { "a/../b" } })
spawn("not_a_list", { modules = "t.echo" })
spawn("nothing", {})
spawn("two", { modules = { "t.echo", "t.cps" } })
-- A trusted runtime may require what it declared, and not what it did not.
spawn("undeclared_trusted", { modules = { "t.undeclared" }, trusted = true })
-- The module functions are the model's, not a plain service's.
print("module_outside=" .. select(2, pcall(lunet.module, { name = "x", version = "1" })):gsub("\n.*", ""))
lunet.exit()
