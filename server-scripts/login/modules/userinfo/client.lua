-- The front end of the login app: one runtime per connection, with its
-- login state (spawn{state = true}), in the group "userinfo.client".
local M = lunet.module { name = "userinfo.client", version = "1.0" }

-- Fired by "near": the back runtime watches it at group level.
M.event("device-near")

-- The continuation of a login: the back runtime decided, this runtime
-- keeps the outcome.
M.sub("after_login", function(ctx, ok, name)
    if not ok then return "DENIED" end
    ctx.state:set("user", name)
    return "OK " .. name
end)

M.sub("whoami", function(ctx)
    return ctx.state:get("user") or "nobody"
end)

-- A Sub has no upvalue to reach M by: it fires the event by its full name.
M.sub("near", function(ctx, other, distance)
    local me = ctx.state:get("user")
    if not me then return "ERR not logged in" end
    if other == "" or not distance then return "ERR NEAR other distance" end
    lunet.fire("userinfo.client.device-near", me, other, distance)
    return "OK"
end)

return M
