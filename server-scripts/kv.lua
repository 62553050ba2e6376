-- server-scripts/kv.lua: a Redis-protocol (RESP2) key-value server.
--
--   lunet serve server-scripts/kv.lua listen=127.0.0.1:6380
--   lunet serve server-scripts/kv.lua listen=127.0.0.1:6380 persist=kv.sqlite
--
-- Real Redis clients talk to it (redis-cli, redis-benchmark, client
-- libraries speaking RESP2). Commands, with Redis 7.0's arities, options and
-- error texts:
--
--   PING ECHO GET SET (NX XX GET KEEPTTL EX PX EXAT PXAT) SETNX DEL EXISTS
--   INCR INCRBY DECR DECRBY MGET MSET EXPIRE PEXPIRE (NX XX GT LT) TTL PTTL
--   PERSIST TYPE DBSIZE FLUSHDB FLUSHALL KEYS QUIT, and enough of COMMAND,
--   CONFIG GET, CLIENT, SELECT 0 and INFO for redis-cli and redis-benchmark.
--
-- Settings (`key=value` on the command line):
--
--   listen    address to listen on (default 127.0.0.1:6380)
--   capacity  bytes of the shared dict that holds the data (default 256 MiB);
--             when full, least recently used keys are evicted (as Redis
--             with maxmemory-policy allkeys-lru); a value that can never fit
--             gets Redis's -OOM error
--   max_bulk  largest accepted bulk string (default 512 MiB, Redis's
--             proto-max-bulk-len)
--   persist   SQLite file: every write is committed there before its reply
--             (acknowledged = durable, also across kill -9) and the data is
--             reloaded at start
--   tls_cert, tls_key
--             serve TLS with this certificate chain and key (PEM files), as
--             redis-server's tls-port does: `redis-cli --tls --cacert CA`
--
-- Protocol. Commands are read with sock:readresp, which parses RESP2 in
-- Rust (core/src/proto/resp.rs) and behaves as redis-server 7.0: inline
-- commands (`PING`, `SET "a b" 'c'` typed by hand) are split like Redis's
-- sdssplitargs; malformed input gets Redis's `-ERR Protocol error: ...`
-- and the connection is closed; the two bytes after a header line's `\r`
-- and after a bulk's data are skipped, not checked. Bounds: a bulk over
-- `max_bulk`, a multibulk count over 1024 * 1024 (Redis 7 allows up to
-- INT_MAX; this keeps the argument table bounded), a header or inline line
-- over 64 KiB without its line end are refused, a declared bulk before a
-- byte of it is read; one command over 1 GiB in total (Redis's
-- client-query-buffer-limit) closes the connection without a reply.
-- Pipelined commands are parsed from one buffer and their replies written
-- together, so a batch of 16 commands costs one read and one write system
-- call.
--
-- Storage. All hosts share the dict named "kv". Values are strings;
-- a string that is a canonical 64-bit integer ("42", "-7", not "042") is
-- stored as a Lua integer, so INCR is one atomic dict:incr and GET turns
-- it back into the same string. TTLs run on the dict's monotonic clock.
--
-- Persistence (persist=FILE). Table kv(k, v, exp, seq): exp is the absolute
-- expiry in wall-clock epoch milliseconds (taken from SQLite's clock at
-- start), seq a process-wide counter. Hosts run commands in parallel, so a
-- write's SQL may commit after a later write's. To keep the file equal to
-- the dict, every write first draws seq from a shared counter, then reads
-- the key's value and TTL back from the dict, and upserts that row only if
-- its seq is newer than the stored one: the highest seq read last, so the
-- file ends with what the dict holds. Deletions leave a row with v NULL
-- (a tombstone, so that an older write arriving late cannot bring the key
-- back); tombstones and expired rows are dropped at the next start. Keys the
-- dict evicted for room are still in the file and come back at a restart.
-- The first host to start loads the file; the others wait for it, and only
-- then does any host listen, so no client sees a half-loaded store.

local lunet = require "lunet"

local byte, find, sub, lower, upper, gsub =
    string.byte, string.find, string.sub, string.lower, string.upper, string.gsub
local concat, unpack = table.concat, table.unpack
local tonumber, tostring, type, error, pcall = tonumber, tostring, type, error, pcall
local math_type, floor = math.type, math.floor
local now = lunet.now

local MIB = 1024 * 1024
local MAX_COMMAND = 1024 * MIB      -- bytes of arguments in one command (readresp's bound)
local LLONG_MAX, LLONG_MIN = math.maxinteger, math.mininteger

local function setting(key, default)
    local value = lunet.getenv(key)
    if value == nil then return default end
    local n = math.tointeger(tonumber(value))
    if not n or n <= 0 then error("kv.lua: " .. key .. " must be a positive integer, got " .. value, 0) end
    return n
end

local capacity = setting("capacity", 256 * MIB)
local max_bulk = setting("max_bulk", 512 * MIB)
local persist_path = lunet.getenv("persist")

local store = lunet.shared.dict("kv", capacity)
-- Coordination of the hosts and the persistence counter.
local meta = lunet.shared.dict("kv.meta", MIB)

local dget, dset, dadd, dreplace, dincr, ddelete, dexpire, dttl =
    store.get, store.set, store.add, store.replace, store.incr, store.delete, store.expire, store.ttl
local dkeys, dsize, dflush = store.keys, store.size, store.flush

-- Replies -------------------------------------------------------------------

local OK = "+OK\r\n"
local PONG = "+PONG\r\n"
local NIL = "$-1\r\n"
local EMPTY = "*0\r\n"
local ZERO, ONE = ":0\r\n", ":1\r\n"
local SYNTAX = "-ERR syntax error\r\n"
local NOT_INTEGER = "-ERR value is not an integer or out of range\r\n"
local OVERFLOW = "-ERR increment or decrement would overflow\r\n"
local OOM = "-OOM command not allowed when used memory > 'maxmemory'.\r\n"

-- "$<n>\r\n" for the usual sizes, built once: formatting a number costs
-- more than the rest of a GET.
local HEADS = {}
for n = 0, 4096 do HEADS[n] = "$" .. n .. "\r\n" end

local function bulk(s)
    local n = #s
    return (HEADS[n] or "$" .. n .. "\r\n") .. s .. "\r\n"
end

local function integer(n)
    return ":" .. n .. "\r\n"
end

-- Redis replaces line ends in error texts so that the reply stays one line.
local function error_reply(text)
    return "-" .. gsub(text, "[\r\n]", " ") .. "\r\n"
end

local function arity_error(name)
    return "-ERR wrong number of arguments for '" .. name .. "' command\r\n"
end

local function expire_time_error(name)
    return "-ERR invalid expire time in '" .. name .. "' command\r\n"
end

-- A C string stops at its first NUL byte; Redis's "%s" shows that much.
local function c_string(s)
    local nul = find(s, "\0", 1, true)
    return nul and sub(s, 1, nul - 1) or s
end

local function unknown_command(argv, argc)
    local args = ""
    local i = 2
    while i <= argc and #args < 128 do
        args = args .. "'" .. sub(c_string(argv[i]), 1, 128 - #args) .. "' "
        i = i + 1
    end
    return error_reply("ERR unknown command '" .. sub(c_string(argv[1]), 1, 128)
        .. "', with args beginning with: " .. args)
end

local function unknown_subcommand(sub_name, command)
    return error_reply("ERR unknown subcommand '" .. sub(c_string(sub_name), 1, 128)
        .. "'. Try " .. command .. " HELP.")
end

-- Numbers -------------------------------------------------------------------

-- Redis's string2ll: an optional '-', no leading zeros, no spaces, no '+',
-- within 64 bits. Exactly the strings Lua prints back unchanged.
local function to_integer(s)
    local first = byte(s, 1)
    if not first or #s > 20 or (first ~= 45 and (first < 48 or first > 57)) then return nil end
    local n = tonumber(s)
    if n and math_type(n) == "integer" and tostring(n) == s then return n end
    return nil
end

-- What the dict stores for a value: canonical integers as integers.
local function stored(value)
    return to_integer(value) or value
end

-- Wall-clock epoch milliseconds (only EXAT/PXAT and persistence need it).
local wall_offset

local function wall_now()
    return wall_offset + now()
end

-- Redis's glob (stringmatchlen, Redis 7.0) --------------------------------------

-- C compares `char`s, which are signed here: bytes over 127 sort first.
local function signed(c)
    if c and c > 127 then return c - 256 end
    return c
end

local skip_longer = false
local MAX_NESTING = 1000

local function glob_from(p, pi, plen, s, si, slen, nesting)
    if nesting > MAX_NESTING then return false end
    while pi <= plen and si <= slen do
        local c = byte(p, pi)
        if c == 42 then                                   -- '*'
            while pi < plen and byte(p, pi + 1) == 42 do pi = pi + 1 end
            if pi == plen then return true end
            while si <= slen do
                if glob_from(p, pi + 1, plen, s, si, slen, nesting + 1) then return true end
                -- The rest matched nowhere: a longer '*' cannot help either.
                if skip_longer then return false end
                si = si + 1
            end
            skip_longer = true
            return false
        elseif c == 63 then                               -- '?'
            si = si + 1
        elseif c == 91 then                               -- '['
            pi = pi + 1
            local negate = byte(p, pi) == 94              -- '^'
            if negate then pi = pi + 1 end
            local matched = false
            local sc = byte(s, si)
            while true do
                local pc = byte(p, pi)
                if pc == 92 and plen - pi >= 1 then       -- '\x' inside brackets
                    pi = pi + 1
                    if byte(p, pi) == sc then matched = true end
                elseif pc == 93 then                      -- ']'
                    break
                elseif pi > plen then                     -- no ']': the pattern ends
                    pi = pi - 1
                    break
                elseif plen - pi >= 2 and byte(p, pi + 1) == 45 then -- 'a-z'
                    local low, high = signed(pc), signed(byte(p, pi + 2))
                    if low > high then low, high = high, low end
                    local x = signed(sc)
                    pi = pi + 2
                    if x >= low and x <= high then matched = true end
                elseif pc == sc then
                    matched = true
                end
                pi = pi + 1
            end
            if negate then matched = not matched end
            if not matched then return false end
            si = si + 1
        else
            if c == 92 and plen - pi >= 1 then           -- '\x' escape
                pi = pi + 1
                c = byte(p, pi)
            end
            if c ~= byte(s, si) then return false end
            si = si + 1
        end
        pi = pi + 1
        if si > slen then
            while byte(p, pi) == 42 do pi = pi + 1 end
            break
        end
    end
    return pi > plen and si > slen
end

local function glob(pattern, s)
    skip_longer = false
    return glob_from(pattern, 1, #pattern, s, 1, #s, 0)
end

-- Persistence -----------------------------------------------------------------

local db -- set when persist= is given

local UPSERT_TAIL = " on conflict (k) do update set v = excluded.v, exp = excluded.exp,"
    .. " seq = excluded.seq where excluded.seq > kv.seq"
local SQL_EXPIRING = "insert into kv (k, v, exp, seq) values (?, ?, ?, ?)" .. UPSERT_TAIL
local SQL_LASTING = "insert into kv (k, v, exp, seq) values (?, ?, null, ?)" .. UPSERT_TAIL
local SQL_GONE = "insert into kv (k, v, exp, seq) values (?, null, null, ?)" .. UPSERT_TAIL

-- The row for `key` as the dict holds it now (see the header: seq first,
-- then the read, so that the newest seq carries the newest state).
local function row_of(key)
    local seq = meta:incr("seq", 1, 0)
    local value = dget(store, key)
    if value ~= nil then
        local left = dttl(store, key)
        if left ~= nil then
            if left > 0 then return { SQL_EXPIRING, key, value, wall_now() + left, seq } end
            return { SQL_LASTING, key, value, seq }
        end
    end
    return { SQL_GONE, key, seq }
end

local function persist_error(err)
    return error_reply("ERR persist: " .. tostring(err))
end

-- Commits the current state of `key`; nil or the error reply.
local function save(key)
    local changes, err = db:exec(unpack(row_of(key)))
    if changes == nil then return persist_error(err) end
    return nil
end

-- Commits the current state of keys[1..n] in one transaction.
local function save_all(keys, n)
    if n == 1 then return save(keys[1]) end
    local rows = {}
    for i = 1, n do rows[i] = row_of(keys[i]) end
    local ok, err = db:atomic(rows)
    if not ok then return persist_error(err) end
    return nil
end

-- Commands --------------------------------------------------------------------

-- name → { handler(argv, argc) → reply [, close], arity, name }.
-- Arity as Redis: n > 0 exactly n words, n < 0 at least -n.
local commands = {}

local function command(name, arity, handler)
    local entry = { handler, arity, name }
    commands[name] = entry
    commands[upper(name)] = entry
end

local function as_bulk(value)
    if value == nil then return NIL end
    if type(value) ~= "string" then value = tostring(value) end
    local n = #value
    return (HEADS[n] or "$" .. n .. "\r\n") .. value .. "\r\n"
end

command("ping", -1, function(argv, argc)
    if argc == 1 then return PONG end
    if argc == 2 then return bulk(argv[2]) end
    return arity_error("ping")
end)

command("echo", 2, function(argv)
    return bulk(argv[2])
end)

command("get", 2, function(argv)
    local value = dget(store, argv[2])
    if value == nil then return NIL end
    if type(value) ~= "string" then value = tostring(value) end
    local n = #value
    return (HEADS[n] or "$" .. n .. "\r\n") .. value .. "\r\n"
end)

local EXPIRE_UNITS = { EX = 1000, PX = 1, EXAT = 1000, PXAT = 1 }
local ABSOLUTE = { EXAT = true, PXAT = true }

local function set_options(argv, argc)
    local key, value = argv[2], argv[3]
    local nx, xx, get, keepttl, unit, expire
    local j = 4
    while j <= argc do
        local option = argv[j]
        if #option <= 7 then option = upper(option) end
        if option == "NX" and not xx then
            nx = true
        elseif option == "XX" and not nx then
            xx = true
        elseif option == "GET" then
            get = true
        elseif option == "KEEPTTL" and not unit then
            keepttl = true
        elseif EXPIRE_UNITS[option] and not keepttl and (unit == nil or unit == option) and j < argc then
            unit = option
            j = j + 1
            expire = argv[j]
        else
            return SYNTAX
        end
        j = j + 1
    end

    local ttl -- ms from now; nil: none
    if unit then
        local n = to_integer(expire)
        if not n then return NOT_INTEGER end
        local scale = EXPIRE_UNITS[unit]
        if n <= 0 or n > LLONG_MAX // scale then return expire_time_error("set") end
        n = n * scale
        if ABSOLUTE[unit] then
            ttl = n - wall_now()
        else
            if n > LLONG_MAX - wall_now() then return expire_time_error("set") end
            ttl = n
        end
    elseif keepttl then
        ttl = dttl(store, key)
        if ttl == 0 then ttl = nil end
    end

    local reply = OK
    if get then reply = as_bulk(dget(store, key)) end

    local ok, err
    value = stored(value)
    if ttl and ttl <= 0 then
        -- An absolute expiry in the past: the key is set and gone at once.
        if (nx and dttl(store, key) ~= nil) or (xx and dttl(store, key) == nil) then
            return get and reply or NIL
        end
        ddelete(store, key)
        ok = true
    elseif nx then
        ok, err = dadd(store, key, value, ttl)
    elseif xx then
        ok, err = dreplace(store, key, value, ttl)
    else
        ok, err = dset(store, key, value, ttl)
    end
    if not ok then
        if err == "no memory" then return OOM end
        return get and reply or NIL -- "exists" (NX) or "not found" (XX)
    end
    if db then
        local failed = save(key)
        if failed then return failed end
    end
    return reply
end

command("set", -3, function(argv, argc)
    if argc > 3 then return set_options(argv, argc) end
    local key, value = argv[2], argv[3]
    -- stored(value), inlined: most values are not numbers.
    local first = #value <= 20 and byte(value, 1)
    if first and (first == 45 or (first >= 48 and first <= 57)) then value = stored(value) end
    local ok = dset(store, key, value)
    if not ok then return OOM end
    if db then
        local failed = save(key)
        if failed then return failed end
    end
    return OK
end)

command("setnx", 3, function(argv)
    local key = argv[2]
    local ok, err = dadd(store, key, stored(argv[3]))
    if not ok then
        if err == "no memory" then return OOM end
        return ZERO
    end
    if db then
        local failed = save(key)
        if failed then return failed end
    end
    return ONE
end)

command("del", -2, function(argv, argc)
    local deleted, keys = 0, nil
    for i = 2, argc do
        local key = argv[i]
        if dttl(store, key) ~= nil then
            ddelete(store, key)
            deleted = deleted + 1
            if db then
                keys = keys or {}
                keys[deleted] = key
            end
        end
    end
    if keys then
        local failed = save_all(keys, deleted)
        if failed then return failed end
    end
    return integer(deleted)
end)

command("exists", -2, function(argv, argc)
    local count = 0
    for i = 2, argc do
        if dttl(store, argv[i]) ~= nil then count = count + 1 end
    end
    return integer(count)
end)

local function increment(key, by)
    local value, err = dincr(store, key, by, 0)
    if value == nil then
        if err == "integer overflow" then return OVERFLOW end
        if err == "no memory" then return OOM end
        return NOT_INTEGER
    end
    if db then
        local failed = save(key)
        if failed then return failed end
    end
    return ":" .. value .. "\r\n"
end

command("incr", 2, function(argv)
    return increment(argv[2], 1)
end)

command("decr", 2, function(argv)
    return increment(argv[2], -1)
end)

command("incrby", 3, function(argv)
    local by = to_integer(argv[3])
    if not by then return NOT_INTEGER end
    return increment(argv[2], by)
end)

command("decrby", 3, function(argv)
    local by = to_integer(argv[3])
    if not by then return NOT_INTEGER end
    if by == LLONG_MIN then return "-ERR decrement would overflow\r\n" end
    return increment(argv[2], -by)
end)

command("mget", -2, function(argv, argc)
    local parts = { "*", argc - 1, "\r\n" }
    local n = 3
    for i = 2, argc do
        n = n + 1
        parts[n] = as_bulk(dget(store, argv[i]))
    end
    return concat(parts, "", 1, n)
end)

command("mset", -3, function(argv, argc)
    if argc % 2 == 0 then return arity_error("mset") end
    local keys, n = nil, 0
    for i = 2, argc, 2 do
        local ok, err = dset(store, argv[i], stored(argv[i + 1]))
        if not ok and err == "no memory" then return OOM end
        if db then
            keys = keys or {}
            n = n + 1
            keys[n] = argv[i]
        end
    end
    if keys then
        local failed = save_all(keys, n)
        if failed then return failed end
    end
    return OK
end)

local function expire_command(name, scale)
    command(name, -3, function(argv, argc)
        local key = argv[2]
        local nx, xx, gt, lt
        for j = 4, argc do
            local option = argv[j]
            if #option == 2 then option = upper(option) end
            if option == "NX" then nx = true
            elseif option == "XX" then xx = true
            elseif option == "GT" then gt = true
            elseif option == "LT" then lt = true
            else return error_reply("ERR Unsupported option " .. c_string(argv[j])) end
        end
        if nx and (xx or gt or lt) then
            return "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
        end
        if gt and lt then return "-ERR GT and LT options at the same time are not compatible\r\n" end

        local ttl = to_integer(argv[3])
        if not ttl then return NOT_INTEGER end
        if scale > 1 then
            if ttl > LLONG_MAX // scale or ttl < LLONG_MIN // scale then return expire_time_error(name) end
            ttl = ttl * scale
        end
        if ttl > LLONG_MAX - wall_now() then return expire_time_error(name) end

        local current = dttl(store, key) -- ms left, 0: none, nil: no key
        if current == nil then return ZERO end
        if (nx and current ~= 0) or (xx and current == 0)
            or (gt and (current == 0 or ttl <= current))
            or (lt and current ~= 0 and ttl >= current) then
            return ZERO
        end
        if ttl <= 0 then
            ddelete(store, key)
        elseif not dexpire(store, key, ttl) then
            return ZERO -- expired in between
        end
        if db then
            local failed = save(key)
            if failed then return failed end
        end
        return ONE
    end)
end

expire_command("expire", 1000)
expire_command("pexpire", 1)

command("ttl", 2, function(argv)
    local left = dttl(store, argv[2])
    if left == nil then return ":-2\r\n" end
    if left == 0 then return ":-1\r\n" end
    return ":" .. (left + 500) // 1000 .. "\r\n"
end)

command("pttl", 2, function(argv)
    local left = dttl(store, argv[2])
    if left == nil then return ":-2\r\n" end
    if left == 0 then return ":-1\r\n" end
    return ":" .. left .. "\r\n"
end)

command("persist", 2, function(argv)
    local key = argv[2]
    local left = dttl(store, key)
    if not left or left == 0 or not dexpire(store, key, 0) then return ZERO end
    if db then
        local failed = save(key)
        if failed then return failed end
    end
    return ONE
end)

command("type", 2, function(argv)
    if dttl(store, argv[2]) == nil then return "+none\r\n" end
    return "+string\r\n"
end)

command("dbsize", 1, function()
    return integer(dsize(store))
end)

local FLUSH_BATCH = 4096

local function flush_all()
    if not db then
        dflush(store)
        return OK
    end
    -- Rows older than this seq belong to keys that are gone or about to be
    -- deleted below (see the header); every key deleted gets a tombstone.
    local first = meta:incr("seq", 1, 0)
    local keys = dkeys(store)
    local rows = { { "delete from kv where seq < ?", first } }
    for i = 1, #keys do
        ddelete(store, keys[i])
        rows[#rows + 1] = row_of(keys[i])
        if #rows == FLUSH_BATCH or i == #keys then
            local ok, err = db:atomic(rows)
            if not ok then return persist_error(err) end
            rows = {}
        end
    end
    if #rows > 0 then
        local ok, err = db:atomic(rows)
        if not ok then return persist_error(err) end
    end
    return OK
end

local function flush_command(name)
    command(name, -1, function(argv, argc)
        if argc > 2 then return SYNTAX end
        if argc == 2 then
            local mode = upper(argv[2])
            if mode ~= "ASYNC" and mode ~= "SYNC" then return SYNTAX end
        end
        return flush_all()
    end)
end

flush_command("flushdb")
flush_command("flushall")

command("keys", 2, function(argv)
    local pattern = argv[2]
    local keys = dkeys(store)
    local parts, n = { "" }, 1
    local all = pattern == "*"
    for i = 1, #keys do
        local key = keys[i]
        if all or glob(pattern, key) then
            n = n + 1
            parts[n] = bulk(key)
        end
    end
    parts[1] = "*" .. (n - 1) .. "\r\n"
    return concat(parts, "", 1, n)
end)

command("select", 2, function(argv)
    local index = to_integer(argv[2])
    if not index then return NOT_INTEGER end
    if index ~= 0 then return "-ERR DB index is out of range\r\n" end
    return OK
end)

command("quit", -1, function()
    return OK, true
end)

-- COMMAND: an empty command table is enough for redis-cli (it only uses it
-- for hints) and for client libraries that probe it.
command("command", -1, function(argv, argc)
    if argc == 1 then return EMPTY end
    local sub_name = upper(argv[2])
    if sub_name == "COUNT" then
        local n = 0
        for name, entry in pairs(commands) do
            if name == entry[3] then n = n + 1 end
        end
        return integer(n)
    end
    if sub_name == "DOCS" or sub_name == "INFO" or sub_name == "LIST" then return EMPTY end
    return unknown_subcommand(argv[2], "COMMAND")
end)

-- CONFIG GET: what redis-benchmark asks at start (it warns without it).
local CONFIG = { { "save", "" }, { "appendonly", "no" }, { "databases", "1" } }

command("config", -2, function(argv, argc)
    local sub_name = upper(argv[2])
    if sub_name == "GET" then
        if argc < 3 then return arity_error("config|get") end
        local parts, n = {}, 0
        for _, pair in ipairs(CONFIG) do
            for j = 3, argc do
                if glob(lower(argv[j]), pair[1]) then
                    parts[n + 1], parts[n + 2] = bulk(pair[1]), bulk(pair[2])
                    n = n + 2
                    break
                end
            end
        end
        return "*" .. n .. "\r\n" .. concat(parts, "", 1, n)
    elseif sub_name == "RESETSTAT" then
        return OK
    end
    return unknown_subcommand(argv[2], "CONFIG")
end)

command("client", -2, function(argv)
    local sub_name = upper(argv[2])
    if sub_name == "SETNAME" or sub_name == "SETINFO" then return OK end
    if sub_name == "GETNAME" then return NIL end
    return unknown_subcommand(argv[2], "CLIENT")
end)

command("info", -1, function()
    return bulk("# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n"
        .. "server:lunet kv.lua\r\n\r\n# Keyspace\r\ndb0:keys=" .. dsize(store)
        .. ",expires=0,avg_ttl=0\r\n")
end)

-- The connection ----------------------------------------------------------------

-- Commands arrive parsed (sock:readresp parses RESP in Rust, inline
-- commands included, with Redis's error texts). Replies go out with
-- sock:write; what a slice wrote is sent when the session next waits, so a
-- pipelined batch costs one read and one write system call.
local PROTOCOL_ERROR = "^Protocol error: "
local TOO_LARGE = "Protocol error: command too large"

local function serve(sock)
    local readresp, write = sock.readresp, sock.write
    while true do
        local argv, err = readresp(sock, max_bulk)
        if not argv then
            if err == TOO_LARGE then
                -- Redis's client-query-buffer-limit: closed without a reply.
                lunet.log("warn", string.format("kv: closing %s: a command over %d bytes",
                    tostring(sock:peer()), MAX_COMMAND))
            elseif find(err, PROTOCOL_ERROR) then
                write(sock, error_reply("ERR " .. err))
            end
            return
        end
        local argc = #argv
        local name = argv[1]
        local entry = commands[name]
        if entry == nil and #name <= 16 then entry = commands[lower(name)] end
        local reply, close
        if entry == nil then
            reply = unknown_command(argv, argc)
        else
            local arity = entry[2]
            if (arity > 0 and argc ~= arity) or argc < -arity then
                reply = arity_error(entry[3])
            else
                reply, close = entry[1](argv, argc)
            end
        end
        write(sock, reply)
        if close then return end
    end
end

-- Start: load the file once, then listen in every host --------------------------

local function load(path)
    db = assert(lunet.db.open(path))
    assert(db:exec("create table if not exists kv (k primary key, v, exp integer, seq integer not null)"))
    local clock = assert(db:query("select (julianday('now') - 2440587.5) * 86400000.0 as ms"))
    meta:set("wall_offset", floor(clock[1].ms) - now())
    wall_offset = meta:get("wall_offset")
    assert(db:exec("delete from kv where v is null or exp <= ?", wall_now()))
    local top = assert(db:query("select max(seq) as seq from kv"))
    meta:set("seq", top[1].seq or 0)
    local last, loaded, dropped = 0, 0, 0
    while true do
        local rows = assert(db:query(
            "select rowid as id, k, v, exp from kv where rowid > ? order by rowid limit 10000", last))
        if #rows == 0 then break end
        local wall = wall_now()
        for i = 1, #rows do
            local row = rows[i]
            last = row.id
            local ttl = row.exp and row.exp - wall
            if not ttl or ttl > 0 then
                if dset(store, row.k, row.v, ttl) then
                    loaded = loaded + 1
                else
                    dropped = dropped + 1
                end
            end
        end
    end
    lunet.log("info", string.format("kv: loaded %d keys from %s%s", loaded, path,
        dropped > 0 and (" (" .. dropped .. " did not fit in capacity=" .. capacity .. ")") or ""))
end

if persist_path then
    if meta:add("loader", true) then
        local ok, err = pcall(load, persist_path)
        if not ok then
            meta:set("failed", tostring(err))
            error("kv.lua: cannot load " .. persist_path .. ": " .. tostring(err), 0)
        end
        meta:set("loaded", true)
    else
        while not meta:get("loaded") do
            local failed = meta:get("failed")
            if failed then error("kv.lua: cannot load " .. persist_path .. ": " .. failed, 0) end
            lunet.sleep(5)
        end
        wall_offset = meta:get("wall_offset")
        db = assert(lunet.db.open(persist_path))
    end
else
    -- Only EXAT/PXAT need the wall clock here: os.time() is whole seconds,
    -- so this is within half a second. Every host uses the first host's.
    meta:add("wall_offset", os.time() * 1000 + 500 - now())
    wall_offset = meta:get("wall_offset")
end

local tls_cert, tls_key = lunet.getenv("tls_cert"), lunet.getenv("tls_key")
if (tls_cert == nil) ~= (tls_key == nil) then
    error("kv.lua: tls_cert and tls_key go together", 0)
end
local tls = tls_cert and { cert = tls_cert, key = tls_key }

lunet.listen(lunet.getenv("listen", "127.0.0.1:6380"), { tls = tls }, serve)
