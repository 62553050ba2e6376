-- A step runner for tests: every line a client sends is Lua (an expression,
-- or statements), run in this connection's session; the answer is one line:
-- pcall's results, described (strings quoted with '...' and bytes outside
-- printable ASCII as \xHH, lunet.redis.null as null, tables as {a b}).
-- Globals set by one step stay for the next ones of the connection.
--
--   lunet serve tests/scripts/steps.lua listen=127.0.0.1:0 --hosts 1 [key=value ...]
local lunet = require "lunet"

local concat, format, type, select, tostring = table.concat, string.format, type, select, tostring

local describe

local function describe_table(t)
    local parts = {}
    for i = 1, #t do parts[i] = describe(t[i]) end
    return "{" .. concat(parts, " ") .. "}"
end

function describe(value)
    if value == lunet.redis.null then return "null" end
    local kind = type(value)
    if kind == "string" then
        return "'" .. value:gsub("[^%w%p ]", function(c) return format("\\x%02X", c:byte()) end) .. "'"
    elseif kind == "number" then
        return math.type(value) == "integer" and tostring(value) or format("%.1f", value)
    elseif kind == "table" then
        return describe_table(value)
    end
    return tostring(value)
end

local function describe_all(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = describe((select(i, ...))) end
    return concat(parts, " ")
end

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local env = setmetatable({ lunet = lunet, getenv = lunet.getenv, describe = describe }, { __index = _G })
    while true do
        local line = sock:readline()
        if not line then return end
        local chunk, err = load("return " .. line, "=step", "t", env)
        if not chunk then chunk, err = load(line, "=step", "t", env) end
        local answer
        if chunk then
            answer = describe_all(pcall(chunk))
        else
            answer = "syntax " .. err
        end
        sock:write((answer:gsub("\n", "\\n")), "\n")
    end
end)
