-- Spawned by svc_first_use.lua: answers "run" with KEY=VALUE lines, each
-- a check of something made on first use.
local lunet = require "lunet"

lunet.dispatch(function(_, command)
    if command ~= "run" then return end
    local out = {}
    local function put(key, value) out[#out + 1] = key .. "=" .. tostring(value) end
    put("table_before", rawget(_G, "table"))
    put("table_type", type(table))
    put("table_kept", rawget(_G, "table") == table)
    put("require_math", require("math") == math)
    -- lunet's coroutine: a lunet call inside a coroutine of the script's
    -- own reaches the scheduler.
    put("coroutine_sleep", coroutine.wrap(function()
        lunet.sleep(1)
        return "slept"
    end)())
    local members = {}
    for name in pairs(lunet) do members[name] = true end
    put("pairs_lunet", members.listen and members.json and members.now and members.spawn
        and members.dispatch and members.redis or false)
    -- A battery, built on first read.
    put("json_encode", lunet.json.encode({ 1, 2 }))
    -- Strict mode: the globals' metatable is the script's alone, and every
    -- library was opened before it took over.
    local set = pcall(setmetatable, _G, {
        __index = function(_, name) error("undeclared global " .. name, 2) end,
    })
    put("strict_set", set)
    put("strict_utf8", type(rawget(_G, "utf8")))
    put("strict_os", type(rawget(_G, "os")))
    local ok, err = pcall(function() return undeclared_name end)
    put("strict_undeclared", not ok and err:match("undeclared global undeclared_name") ~= nil)
    return table.concat(out, "\n")
end)
