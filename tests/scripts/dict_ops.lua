-- Shared dicts for tests/shared_dict.rs. Each connection sends command
-- lines, one answer line per command. Scenario commands run a fixed
-- sequence and answer with what each step returned, so the test compares
-- whole lines.
local lunet = require "lunet"

-- Chosen once per host VM at load time: which VM served a connection.
local vm = string.format("%s-%d", tostring({}):match("0x%x+") or "vm", math.random(1, 1 << 30))

local function show(...)
    local out = {}
    for i = 1, select("#", ...) do
        local value = select(i, ...)
        local kind = math.type(value) or type(value)
        if kind == "nil" or kind == "boolean" then
            out[#out + 1] = tostring(value)
        else
            out[#out + 1] = kind .. ":" .. tostring(value)
        end
    end
    return table.concat(out, " ")
end

local commands = {}

function commands.vm(sock)
    sock:write(vm, "\n")
end

-- set NAME KEY VALUE: a string value in dict NAME; answers "<vm> <results>".
function commands.set(sock, name, key, value)
    local dict = lunet.shared.dict(name)
    sock:write(vm, " ", show(dict:set(key, value)), "\n")
end

-- get NAME KEY: answers "<vm> <value>".
function commands.get(sock, name, key)
    local dict = lunet.shared.dict(name)
    sock:write(vm, " ", show(dict:get(key)), "\n")
end

function commands.incr_shared(sock, name, key)
    local dict = lunet.shared.dict(name)
    sock:write(vm, " ", show(dict:incr(key, 1, 0)), "\n")
end

function commands.values(sock)
    local dict = lunet.shared.dict("values")
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    step(dict:set("int", 42))
    step(dict:get("int"))
    step(dict:set("float", 2.5))
    step(dict:get("float"))
    step(dict:set("whole float", 3.0))
    step(dict:get("whole float"))
    step(dict:set("yes", true))
    step(dict:get("yes"))
    step(dict:set("no", false))
    step(dict:get("no"))
    step(dict:set("bytes", "a\0b\255"))
    step(dict:get("bytes") == "a\0b\255")
    step(dict:get("missing"))
    step(dict:set("int", nil)) -- deletes
    step(dict:get("int"))
    step(dict:delete("yes"))
    step(dict:get("yes"))
    step(dict:delete("never there"))
    sock:write(table.concat(steps, " | "), "\n")
end

-- Sets a key with a 100 ms TTL, checks the TTL it reports, then polls
-- until the key is gone (bounded: 5 s).
function commands.ttl_expiry(sock)
    local dict = lunet.shared.dict("ttl")
    local ok = dict:set("short", "lived", 100)
    local left = dict:ttl("short")
    local seen = dict:get("short")
    local polls = 0
    while dict:get("short") ~= nil and polls < 250 do
        lunet.sleep(20)
        polls = polls + 1
    end
    local gone = dict:get("short") == nil
    sock:write(show(ok, seen, left > 0 and left <= 100, gone, dict:ttl("short")), "\n")
end

function commands.expire_ttl(sock)
    local dict = lunet.shared.dict("expire")
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    step(dict:set("k", "v"))
    step(dict:ttl("k"))            -- no TTL: 0
    step(dict:expire("k", 60000))
    local left = dict:ttl("k")
    step(left > 0 and left <= 60000)
    step(dict:expire("k", 0))      -- persist again
    step(dict:ttl("k"))
    step(dict:expire("k", 60000))
    step(dict:expire("k"))         -- nil also persists
    step(dict:ttl("k"))
    step(dict:ttl("missing"))
    step(dict:expire("missing", 10))
    step(dict:expire("k", 1))      -- expires almost at once
    lunet.sleep(20)
    step(dict:get("k"))
    step(dict:ttl("k"))
    sock:write(table.concat(steps, " | "), "\n")
end

-- A 64 KiB dict (one shard) filled with ~1.1 KiB entries until a set
-- reports forcible; k1 was read just before, so k2 is the least recently
-- used and must be the one that goes.
function commands.lru(sock)
    local dict = lunet.shared.dict("lru", 64 * 1024)
    local value = string.rep("x", 1000)
    local n, forcible = 0, false
    repeat
        n = n + 1
        local ok, err
        ok, err, forcible = dict:set("k" .. n, value)
        if not ok then return sock:write("set failed ", tostring(err), "\n") end
        if n == 3 then dict:get("k1") end -- k1 becomes more recent than k2
    until forcible or n > 1000
    sock:write(show(forcible, n > 3, dict:get("k1") ~= nil, dict:get("k2") ~= nil,
        dict:get("k3") ~= nil, dict:get("k" .. n) ~= nil), "\n")
end

function commands.incr(sock)
    local dict = lunet.shared.dict("incr")
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    step(dict:incr("n", 1))                -- missing, no init
    step(dict:incr("n", 1, 10))            -- init 10 + 1
    step(dict:incr("n", 5))
    step(dict:incr("n", -20))
    step(dict:incr("n", 0.5))              -- integer + float = float
    step(dict:set("s", "text"))
    step(dict:incr("s", 1))
    step(dict:set("b", true))
    step(dict:incr("b", 1))
    step(dict:set("max", math.maxinteger))
    step(dict:incr("max", 1))
    step(dict:get("max") == math.maxinteger)
    step(dict:incr("f", 1.5, 1))           -- init 1 + 1.5
    step(dict:incr("t", 1, 0, 60000))      -- init with a TTL
    local left = dict:ttl("t")
    step(left > 0 and left <= 60000)
    sock:write(table.concat(steps, " | "), "\n")
end

function commands.add_replace(sock)
    local dict = lunet.shared.dict("add_replace")
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    step(dict:replace("k", "v"))
    step(dict:get("k"))
    step(dict:add("k", "first"))
    step(dict:add("k", "second"))
    step(dict:get("k"))
    step(dict:replace("k", "third"))
    step(dict:get("k"))
    sock:write(table.concat(steps, " | "), "\n")
end

function commands.keys_size_flush(sock)
    local dict = lunet.shared.dict("keys")
    for i = 1, 5 do dict:set("key" .. i, i) end
    local keys = dict:keys()
    table.sort(keys)
    local two = dict:keys(2)
    local size = dict:size()
    local flushed = dict:flush()
    sock:write(show(table.concat(keys, ","), #two, size, flushed, dict:size(), dict:get("key1"),
        #dict:keys()), "\n")
end

-- 10,000 keys into a 128 KiB dict: most are evicted, memory stays bounded.
function commands.capacity_fill(sock)
    local dict = lunet.shared.dict("bounded", 128 * 1024)
    local evictions = 0
    for i = 1, 10000 do
        local ok, err, forcible = dict:set("key-" .. i, "value-" .. i)
        if not ok then return sock:write("set failed ", tostring(err), "\n") end
        if forcible then evictions = evictions + 1 end
    end
    sock:write(show(dict:capacity(), dict:used() <= dict:capacity(), dict:size() < 10000,
        evictions > 0, dict:get("key-10000")), "\n")
end

function commands.no_memory(sock)
    local dict = lunet.shared.dict("small", 64 * 1024)
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    step(dict:set("keep", "old"))
    step(dict:set("big", string.rep("x", 70 * 1024)))
    step(dict:set("keep", string.rep("x", 70 * 1024))) -- the old value stays
    step(dict:get("keep"))
    step(dict:get("big"))
    sock:write(table.concat(steps, " | "), "\n")
end

-- The calls the fast paths leave to the mlua methods (dict_fast.rs): a
-- number key, a string ttl or increment base, a nil value, extra
-- arguments, and misuse that answers instead of raising.
function commands.unusual(sock)
    local dict = lunet.shared.dict("unusual")
    local steps = {}
    local function step(...) steps[#steps + 1] = show(...) end
    -- pcall, with the error's first line.
    local function attempt(...)
        local ok, err = pcall(...)
        return ok, tostring(err):match("[^\n]*")
    end
    step(dict:set(7, "seven"))
    step(dict:get("7"), dict:get(7))
    step(dict:set("ttl", "v", "60000"))
    step(dict:ttl("ttl") > 0)
    step(dict:set("ttl", nil))
    step(dict:get("ttl"), dict:ttl("ttl"))
    step(dict:add("7", "again"))
    step(dict:replace("none", "v"))
    step(dict:add("n", 1.5, 0))
    step(attempt(dict.incr, dict, "n", 1, "0"))
    step(dict:incr("fresh", 2, 10, "60000"))
    step(dict:incr("s", 1))
    step(dict:delete(7, "extra"))
    step(dict:get("7", "extra"))
    step(attempt(dict.get, {}, "k"))
    step(attempt(dict.set, dict))
    local other = lunet.shared.dict("other")
    other:set("k", "o")
    step(dict.get(other, "k"))
    sock:write(table.concat(steps, " | "), "\n")
end

-- Misuse raises: the error is logged and the connection closes.
function commands.bad_key(sock)
    lunet.shared.dict("bad"):set({}, "v")
    sock:write("not raised\n")
end

function commands.bad_value(sock)
    lunet.shared.dict("bad"):set("k", {})
    sock:write("not raised\n")
end

function commands.bad_incr(sock)
    lunet.shared.dict("bad"):incr("k", "one")
    sock:write("not raised\n")
end

function commands.bad_name(sock)
    lunet.shared.dict(nil)
    sock:write("not raised\n")
end

function commands.bad_capacity(sock)
    lunet.shared.dict("negative", -1)
    sock:write("not raised\n")
end

function commands.bad_ttl(sock)
    lunet.shared.dict("bad"):set("k", "v", "soon")
    sock:write("not raised\n")
end

function commands.ping(sock)
    sock:write("pong\n")
end

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local words = {}
        for word in line:gmatch("%S+") do words[#words + 1] = word end
        local command = commands[words[1]]
        if command then
            command(sock, table.unpack(words, 2))
        else
            sock:write("unknown ", line, "\n")
        end
    end
end)
