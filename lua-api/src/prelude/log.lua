-- lunet.log(level, ...) (part of prelude.lua, loaded on first use): the
-- values as `print` shows them (tostring, tab-separated) on one log line
-- at `level`.

local core, lunet = ...
local LOG_LEVELS, LOG_LEVEL_NAMES, c_log = core.LOG_LEVELS, core.LOG_LEVEL_NAMES, core.log
local tostring, type, select, error = tostring, type, select, error

function lunet.log(level, ...)
    if not LOG_LEVELS[level] then
        local got = type(level) == "string" and string.format("%q", level) or type(level)
        error("lunet.log: the level must be one of " .. LOG_LEVEL_NAMES .. ", got " .. got, 2)
    end
    local n = select("#", ...)
    if n == 1 then return c_log(level, tostring((...))) end
    local parts = { ... }
    for i = 1, n do parts[i] = tostring(parts[i]) end
    return c_log(level, table.concat(parts, "\t", 1, n))
end
