-- lunet run iso_attacks.lua secret=hunter2 target=127.0.0.1:PORT dir=/tmp/...:
-- issue 9, rows 1, 2 and 6, against spawned services. Prints key=value
-- lines for tests/isolation.rs.
local lunet = require "lunet"

local function show(key, value)
    print(key .. "=" .. tostring(value):gsub("\n", "\\n"))
end

local dir = lunet.getenv("dir")
local kv = lunet.shared.dict("kv")
kv:set("k", "the operator's value")

-- No caps at all.
local bare = lunet.spawn("iso_attacker.lua")
local attacks = {
    read_passwd = {}, write_file = { dir .. "/written" }, attach = { dir .. "/attached" },
    listen = {}, connect = { lunet.getenv("target") }, resolve = {}, getenv = {},
    dict_read = {}, dict_flush = {}, lane_sleep = {}, raw_lane_yield = {},
    escalate = { dir .. "/escalate.lua" }, grant = { "net" },
}
for name, args in pairs(attacks) do
    show("bare." .. name, lunet.call(bare, name, table.unpack(args)))
end
show("kv_after", kv:get("k"))

-- Row 1 with what the attack needs besides: fs and spawn.
local writer = lunet.spawn { script = "iso_attacker.lua", caps = { fs = true, spawn = true } }
show("writer.escalate", lunet.call(writer, "escalate", dir .. "/escalate2.lua"))
show("writer.grant_net", lunet.call(writer, "grant", "net"))
show("writer.grant_fs", lunet.call(writer, "grant", "fs"))

-- Dicts by name.
local named = lunet.spawn { script = "iso_attacker.lua", caps = { dicts = { "sessions" } } }
show("named.dict_read", lunet.call(named, "dict_read"))

-- Row 2: a 2 GB dict from a service bounded at 16 MB.
local bounded = lunet.spawn {
    script = "iso_attacker.lua", memory = 16 * 1024 * 1024, caps = { dicts = true, spawn = true },
}
show("bounded.big_dict", lunet.call(bounded, "big_dict", 1200))
show("bounded.grant_memory", lunet.call(bounded, "grant_memory", 64 * 1024 * 1024))

-- Granted capabilities work.
local granted = lunet.spawn {
    script = "iso_attacker.lua", caps = { fs = true, env = true, dicts = { "kv" }, net = true },
}
show("granted.read_passwd", lunet.call(granted, "read_passwd"):sub(1, 8))
show("granted.getenv", lunet.call(granted, "getenv"))
show("granted.dict_read", lunet.call(granted, "dict_read"))
show("granted.connect", lunet.call(granted, "connect", lunet.getenv("target")))

-- Row 6: TTLs that mean nothing.
for label, ttl in pairs { nan = 0 / 0, negative = -5, infinite = math.huge } do
    local ok, err = pcall(kv.set, kv, "t", "v", ttl)
    show("ttl." .. label, tostring(ok) .. " " .. tostring(err))
    ok, err = pcall(kv.expire, kv, "k", ttl)
    show("expire." .. label, tostring(ok) .. " " .. tostring(err))
end
show("ttl.zero", kv:set("t", "v", 0) and kv:ttl("t"))
lunet.exit()
