-- The seed's userinfo example as an app (docs/runtime-model.md):
--
--   lunet serve server-scripts/login listen=127.0.0.1:7010
--
-- `lunet serve DIR` runs DIR/app.lua in every host, finds modules in
-- DIR/modules and keeps data in DIR/data (--modules, --data change them).
--
-- A line protocol; each line gets one line back:
--   REGISTER name password  -> OK name | TAKEN | ERR ...
--   LOGIN name password     -> OK name | DENIED
--   WHOAMI                  -> name | nobody
--   NEAR other distance     -> OK | ERR not logged in
--   NEARBY                  -> other:distance ... | (none)
--   QUIT                    -> BYE, and the connection closes
--
-- Two kinds of runtime: one back runtime (module userinfo.server, with its
-- own database: storage) shared by every connection, and a front runtime
-- per connection (module userinfo.client, with its login state: state),
-- member of the group "userinfo.client". A login calls the back runtime
-- with a continuation Sub, which the front runtime then runs; "device-near"
-- is a client event that the back runtime watches at group level.
local lunet = require "lunet"

-- Every host runs this: the first to spawn the back runtime gets its name;
-- the others find it by that name.
local back = lunet.query("userinfo.server")
if not back then
    local ok, spawned = pcall(lunet.spawn, {
        modules = { "userinfo.server" }, name = "userinfo.server", storage = true,
    })
    back = ok and spawned or assert(lunet.query("userinfo.server"), spawned)
end

-- The app names the versions of its modules: the other hosts reach here
-- before the back runtime has loaded its module, and no front runtime
-- runs yet (lunet.sub without a version takes the one this process
-- loaded). A call that comes while the back runtime loads waits for it.
local SERVER, CLIENT = "1.0", "1.0"
local LOGIN = lunet.sub("userinfo.server", "login", SERVER)
local REGISTER = lunet.sub("userinfo.server", "register", SERVER)
local NEARBY = lunet.sub("userinfo.server", "nearby", SERVER)
local AFTER_LOGIN = lunet.sub("userinfo.client", "after_login", CLIENT)
local WHOAMI = lunet.sub("userinfo.client", "whoami", CLIENT)
local NEAR = lunet.sub("userinfo.client", "near", CLIENT)

lunet.listen(lunet.getenv("listen", "127.0.0.1:7010"), function(sock)
    local front = lunet.spawn {
        modules = { "userinfo.client" }, group = "userinfo.client", state = true,
    }
    while true do
        local line = sock:readline()
        if not line then break end
        local command, a, b = line:match("^(%S+)%s*(%S*)%s*(%S*)")
        local reply
        if command == "LOGIN" then
            -- CPS: the back runtime answers with the continuation it was
            -- given, and the front runtime runs it with the outcome.
            local k, ok, name = lunet.call(back, LOGIN, a, b, AFTER_LOGIN)
            reply = lunet.call(front, k, ok, name)
        elseif command == "REGISTER" then
            reply = lunet.call(back, REGISTER, a, b)
        elseif command == "WHOAMI" then
            reply = lunet.call(front, WHOAMI)
        elseif command == "NEAR" then
            reply = lunet.call(front, NEAR, a, tonumber(b))
        elseif command == "NEARBY" then
            reply = lunet.call(back, NEARBY, lunet.call(front, WHOAMI))
        elseif command == "QUIT" then
            sock:write("BYE\n")
            break
        else
            reply = "ERR unknown command (REGISTER, LOGIN, WHOAMI, NEAR, NEARBY, QUIT)"
        end
        sock:write(reply, "\n")
    end
    -- The front runtime ends with its connection (and leaves its group).
    lunet.kill(front)
end)
