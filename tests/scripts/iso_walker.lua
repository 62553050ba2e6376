-- Walks the `lunet` module table recursively and calls every function it
-- finds: the ones any service may use with harmless arguments, every other
-- one with no arguments at all (a binding checks its capability before its
-- arguments). Answers "walk" with one line per function:
-- "path verdict" where verdict is ok, denied (raised "not permitted") or
-- raised (another error).
local lunet = require "lunet"
-- The runtime model's calls load on first use: use one, so the walk
-- covers them all (lunet.state and lunet.storage are gated).
local _ = lunet.group

local waiter
-- Functions every service may call, with harmless arguments (a function
-- path under "json." is pure too). Any other function must be denied to a
-- service that holds no capability.
local ungated = {
    now = {}, self = {}, log = { "debug", "walk" }, query = { "nobody" },
    register = { "walker:" .. lunet.self() }, send = { lunet.self(), "noop" },
    call = { lunet.self(), "noop" }, sleep = { 0 }, fork = { function() end },
    timeout = { 0, function() end }, queue = {}, response = {}, kill = { -1 },
    wakeup = { false }, call_timeout = { 1000, lunet.self(), "noop" },
    on_shutdown = { function() end },
    -- Batteries that reach out only through what a caller already holds.
    ["http.router"] = {}, ["http.read_response"] = {}, ["ws.upgrade"] = {},
    module = {}, sub = { "walk.module", "sub", "1" }, fire = { "walk.event" },
    attach = { "walk.event", function() end }, group = { "walk" },
    wait = false, exit = false, dispatch = false, -- called apart, below
}

local function ungated_args(path)
    if path:match("^json%.") then return {} end
    return ungated[path]
end

local function verdict(ok, err)
    if ok then return "ok" end
    err = tostring(err)
    if err:find("not permitted", 1, true) then return "denied" end
    return "raised " .. err:gsub("\n.*", "")
end

local function walk(tbl, prefix, seen, out)
    if seen[tbl] then return end
    seen[tbl] = true
    local keys = {}
    for key in pairs(tbl) do keys[#keys + 1] = key end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, key in ipairs(keys) do
        local value, path = tbl[key], prefix .. tostring(key)
        if type(value) == "table" then
            walk(value, path .. ".", seen, out)
        elseif type(value) == "function" and ungated_args(path) ~= false then
            local args = ungated_args(path)
            if args then
                out[#out + 1] = path .. " ungated " .. verdict(pcall(value, table.unpack(args)))
            else
                out[#out + 1] = path .. " gated " .. verdict(pcall(value))
            end
        end
    end
end

local dispatch
dispatch = function(_, command)
    if command ~= "walk" then return end
    local reply = lunet.response()
    lunet.fork(function()
        local out = {}
        -- Batteries are built on first use: touch them so the walk sees them.
        local _ = lunet.json, lunet.http, lunet.ws, lunet.cluster
        walk(lunet, "", {}, out)
        -- The three that would end or stop this walk, called apart.
        lunet.fork(function()
            waiter = coroutine.running()
            out[#out + 1] = "wait ungated " .. verdict(pcall(lunet.wait))
        end)
        while not waiter do lunet.sleep(1) end
        lunet.wakeup(waiter)
        lunet.sleep(1)
        out[#out + 1] = "dispatch ungated " .. verdict(pcall(lunet.dispatch, dispatch))
        reply(table.concat(out, "\n"))
        lunet.exit()
    end)
end
lunet.dispatch(dispatch)
