-- lunet serve iso_hosts.lua: issue 9, row 3. Every host notes its handle in
-- the "iso_hosts" dict; a connection sends one line:
--   "attack"  -> a sandbox with no caps tries to kill every host and the
--                service named "payments", then to take its name;
--   "attack_with_kill" -> the same from a sandbox granted kill;
--   "ping"    -> "pong" (the server still serves).
-- Each step is answered as one line "step: result".
local lunet = require "lunet"

local hosts = lunet.shared.dict("iso_hosts")
hosts:set(tostring(lunet.self()), true)

local function payments()
    local handle = lunet.query("payments")
    if handle then return handle end
    local ok, spawned = pcall(lunet.spawn, { script = "svc_worker.lua", name = "payments", args = { "payments" } })
    return ok and spawned or lunet.query("payments")
end

local function attack(sock, caps)
    local target = payments()
    local attacker = lunet.spawn { script = "iso_attacker.lua", caps = caps }
    for _, key in ipairs(hosts:keys()) do
        sock:write("kill host: ", lunet.call(attacker, "kill", tonumber(key)), "\n")
    end
    sock:write("kill payments: ", lunet.call(attacker, "kill", "payments"), "\n")
    -- Once its holder is gone (if the kill went through), the name is free
    -- again only for trusted services.
    while lunet.query("payments") == target and caps do lunet.sleep(1) end
    sock:write("register payments: ", lunet.call(attacker, "register", "payments"), "\n")
    sock:write("payments is: ", tostring(lunet.query("payments") == target), "\n")
    sock:write("done\n")
end

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local line = sock:readline()
    if line == "attack" then
        attack(sock, nil)
    elseif line == "attack_with_kill" then
        attack(sock, { kill = true })
    elseif line == "ping" then
        sock:write("pong\n")
    end
end)
