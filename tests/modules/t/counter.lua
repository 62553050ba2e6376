-- tests/model.rs: events. "tick" is fired by the Sub "fire"; functions
-- attached here (lunet.attach(event, fn)) count into TICKS.
local M = lunet.module { name = "t.counter", version = "1" }
M.event("tick")
TICKS = {}

M.sub("fire", function(ctx, n)
    return lunet.fire("t.counter.tick", n, lunet.self())
end)

M.sub("attach_here", function(ctx)
    return lunet.attach("t.counter.tick", function(n, from)
        TICKS[#TICKS + 1] = n
    end)
end)

-- A value that cannot be copied to an attacher elsewhere.
M.sub("fire_function", function(ctx)
    local ok, err = pcall(lunet.fire, "t.counter.tick", print)
    return ok, tostring(err)
end)

M.sub("ticks", function(ctx)
    return TICKS
end)

M.sub("attach_unknown", function(ctx)
    local ok, err = pcall(lunet.attach, "t.counter.nothing", function() end)
    return ok, tostring(err)
end)
return M
