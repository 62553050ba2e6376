-- tests/model.rs: Subs of every shape. The functions a Sub needs are
-- globals of this module's environment (a Sub may capture no upvalue).
local M = lunet.module { name = "t.echo", version = "1.0", depends = { "t.util" } }
util = require "t.util"

M.sub("echo", function(ctx, ...)
    return ctx.source, ...
end)

M.sub("whoami", function(ctx)
    return lunet.self()
end)

M.sub("twice", function(ctx, x)
    return util.twice(x)
end)

-- An answer that cannot be copied.
M.sub("give_function", function(ctx)
    return print
end)

M.sub("fail", function(ctx, why)
    error("failed on purpose: " .. why)
end)

-- Allocates `n` bytes in one string (the memory bound's test).
M.sub("allocate", function(ctx, n)
    return #string.rep("x", n)
end)

-- Never yields (the slice bound's test).
M.sub("spin", function(ctx)
    while true do end
end)

-- One slice that runs until the dict "model" holds "release" (the
-- mailbox's test: meanwhile messages queue up). Needs caps = {dicts = {"model"}}.
M.sub("busy", function(ctx)
    local flags = lunet.shared.dict("model")
    flags:set("busy", true)
    while not flags:get("release") do end
    flags:delete("busy")
    return true
end)

M.sub("sleep", function(ctx, ms)
    lunet.sleep(ms)
    return ms
end)

-- Where a send lands: counted, then read with "sent".
SENT = {}
M.sub("note", function(ctx, value)
    SENT[#SENT + 1] = value
end)
M.sub("sent", function(ctx)
    return SENT
end)

M.event("ping")
M.sub("fire", function(ctx, ...)
    return lunet.fire("t.echo.ping", ...)
end)
M.sub("fire_short", function(ctx, ...)
    return MODULE.fire("ping", ...)
end)
MODULE = M

-- The module's environment is its own: globals set here are not the
-- runtime's.
M.sub("globals", function(ctx)
    return rawget(_G, "SENT") == nil, util ~= nil, _ENV ~= _G
end)

return M
