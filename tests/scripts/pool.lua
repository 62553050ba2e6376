-- tests/pool.rs: sock:setkeepalive and lunet.connect's pool, against the
-- test's line server at `target=` (commands: WHO -> "conn N", EXTRA -> two
-- lines, CLOSE -> "ok" then it closes, LATER -> "ok", then a line later).
-- Prints key=value lines; exits when done (pooled connections do not keep
-- the service alive).
local lunet = require "lunet"
local target = assert(lunet.getenv("target"))

local function who(sock)
    assert(sock:write("WHO\n"))
    return sock:readline()
end

local function say(key, ...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    print(key .. "=" .. table.concat(parts, " ", 1, parts.n))
end

-- Reuse: the second connect gets the first connection back.
local sock = assert(lunet.connect(target, 2000))
local first = who(sock)
say("keepalive", sock:setkeepalive())
say("old_socket", sock:write("WHO\n"))
say("old_read", sock:readline())
local again = assert(lunet.connect(target, 2000))
say("reused", who(again) == first)

-- The peer closed it while pooled: a fresh one.
assert(again:write("CLOSE\n"))
assert(again:readline() == "ok")
say("closing_keepalive", again:setkeepalive())
lunet.sleep(100)
local fresh = assert(lunet.connect(target, 2000))
local third = who(fresh)
say("fresh_after_close", third ~= first)

-- Unread data: refused, and the connection is closed.
assert(fresh:write("EXTRA\n"))
assert(fresh:readline() == "ok")
lunet.sleep(50)
say("unread", fresh:setkeepalive())
say("unread_after", fresh:write("WHO\n"))

-- The peer speaks while pooled: dropped.
local talker = assert(lunet.connect(target, 2000))
local talker_name = who(talker)
assert(talker:write("LATER\n"))
assert(talker:readline() == "ok")
say("later_keepalive", talker:setkeepalive())
lunet.sleep(300)
local next_one = assert(lunet.connect(target, 2000))
local next_name = who(next_one)
say("fresh_after_later", next_name ~= talker_name, next_name, talker_name)

-- Idle timeout: closed after idle_ms.
local idle_name = who(next_one)
say("idle_keepalive", next_one:setkeepalive(100))
lunet.sleep(400)
local after_idle = assert(lunet.connect(target, 2000))
say("fresh_after_idle", who(after_idle) ~= idle_name)
after_idle:close()

-- Size: three connections back into a pool of two; the oldest is closed.
local a = assert(lunet.connect(target, { timeout = 2000, pool = "sized" }))
local b = assert(lunet.connect(target, { timeout = 2000, pool = "sized" }))
local c = assert(lunet.connect(target, { timeout = 2000, pool = "sized" }))
local names = { who(a), who(b), who(c) }
say("sized", a:setkeepalive(10000, 2), b:setkeepalive(10000, 2), c:setkeepalive(10000, 2))
local got = {}
for i = 1, 3 do
    local s = assert(lunet.connect(target, { timeout = 2000, pool = "sized" }))
    got[i] = who(s)
    s:close()
end
say("sized_reuse", got[1] == names[3], got[2] == names[2], got[3] ~= names[1] and got[3] ~= names[2])
-- Another key does not see them.
say("sized_names", names[1] ~= names[2], names[2] ~= names[3])

-- Misuse raises.
local busy = assert(lunet.connect(target, 2000))
lunet.fork(function() busy:readline() end)
lunet.sleep(10)
local ok, err = pcall(busy.setkeepalive, busy)
say("busy", ok, err)
busy:close()
say("bad_idle", pcall(after_idle.setkeepalive, after_idle, -1))

-- A pooled connection left behind does not keep the service alive.
local last = assert(lunet.connect(target, 2000))
who(last)
say("last_keepalive", last:setkeepalive())
say("done", true)
