-- The back end of the login app: users in the runtime's own database
-- (spawn{storage = true}), and who was near whom, learnt from the
-- "device-near" events of every front runtime (a group-level attachment).
-- A Sub gets what it needs as arguments and reaches the rest through the
-- globals of this module (a Sub may capture no upvalue).
local M = lunet.module { name = "userinfo.server", version = "1.0" }

-- Every storage call yields (it runs on the lane): loading the module
-- waits for the table, the spawn returns after.
local db = lunet.storage()
assert(db:exec("create table if not exists users (name text primary key, password text not null)"))
-- Demo users (a real server keeps password hashes, not passwords).
assert(db:exec("insert or ignore into users (name, password) values ('alice', 'wonderland'), ('bob', 'builder')"))

-- name -> { "other:distance", ... }
NEAR = {}

local function remember(name, other, distance)
    local seen = NEAR[name] or {}
    seen[#seen + 1] = other .. ":" .. tostring(distance)
    NEAR[name] = seen
end

-- fn(member, ...) for every device-near fired in a member of the group,
-- members spawned later included. It runs in this runtime.
lunet.group("userinfo.client"):attach("userinfo.client.device-near",
    function(member, name, other, distance)
        remember(name, other, distance)
        remember(other, name, distance)
    end)

-- k is the caller's continuation: the answer tells it what to run next.
M.sub("login", function(ctx, name, password, k)
    local rows = ctx.storage:query("select password from users where name = ?", name)
    local ok = rows ~= nil and rows[1] ~= nil and rows[1].password == password
    return k, ok, name
end)

M.sub("register", function(ctx, name, password)
    if name == "" or password == "" then return "ERR REGISTER name password" end
    local changes, err = ctx.storage:exec(
        "insert or ignore into users (name, password) values (?, ?)", name, password)
    if not changes then return "ERR " .. err end
    return changes == 1 and ("OK " .. name) or "TAKEN"
end)

M.sub("nearby", function(ctx, name)
    local seen = NEAR[name]
    return seen and table.concat(seen, " ") or "(none)"
end)

return M
