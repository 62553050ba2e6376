-- SQLite through the lane for tests/db.rs. The database file is `db=PATH`.
-- Each connection sends command lines, one answer line per command:
--   roundtrip        -> every bind type in and out: "name=type:value ..." by column
--   syntax           -> a malformed statement: "nil <err>"
--   query_syntax     -> the same through db:query
--   bad_table        -> a query on a missing table: "nil <err>"
--   atomic_ok        -> two inserts in one transaction: "<ok> <err> <changes> count=<n>"
--   atomic_rollback  -> an insert, then a duplicate key in the same db:atomic:
--                       "<ok> <err> count=<n>"
--   insert KEY VALUE -> "ok <changes> <last_insert_id>" or "nil <err>"
--   count            -> "count <n>"
--   get KEY          -> "value <v>" or "none"
--   open PATH        -> lunet.db.open(PATH): "db" or "nil <err>"
--   ping             -> pong
local lunet = require "lunet"

local path = assert(lunet.getenv("db"), "db=PATH is required")
local db = assert(lunet.db.open(path))
-- Every host runs this; IF NOT EXISTS makes that harmless.
assert(db:exec("create table if not exists kv (k text primary key, v text)"))

local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function show(value)
    local kind = math.type(value) or type(value)
    if kind == "string" and not utf8.len(value) then
        return "binary:" .. hex(value)
    end
    return kind .. ":" .. tostring(value)
end

local commands = {}

function commands.ping(sock)
    sock:write("pong\n")
end

function commands.open(sock, other)
    local handle, err = lunet.db.open(other)
    if handle then
        sock:write("db\n")
    else
        sock:write("nil ", tostring(err), "\n")
    end
end

function commands.roundtrip(sock)
    assert(db:exec("drop table if exists kinds"))
    assert(db:exec("create table kinds (id integer primary key, i, f, s, b, n, yes, no, big, neg)"))
    local changes, id = db:exec(
        "insert into kinds (i, f, s, b, n, yes, no, big, neg) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        42, 1.5, "hé llo", "\0\1\255\254", nil, true, false, math.maxinteger, -7.25)
    local rows, err = db:query("select * from kinds where id = ?", id)
    if not rows then return sock:write("nil ", tostring(err), "\n") end
    local row = rows[1]
    local names = {}
    for name in pairs(row) do names[#names + 1] = name end
    table.sort(names)
    local out = { "changes=" .. tostring(changes), "rows=" .. #rows }
    for _, name in ipairs(names) do out[#out + 1] = name .. "=" .. show(row[name]) end
    sock:write(table.concat(out, " "), "\n")
end

function commands.syntax(sock)
    local ok, err = db:exec("selec 1 from")
    sock:write(tostring(ok), " ", tostring(err), "\n")
end

function commands.query_syntax(sock)
    local rows, err = db:query("select from where")
    sock:write(tostring(rows), " ", tostring(err), "\n")
end

function commands.bad_table(sock)
    local rows, err = db:query("select * from no_such_table")
    sock:write(tostring(rows), " ", tostring(err), "\n")
end

local function count(table_name)
    local rows = assert(db:query("select count(*) as n from " .. table_name))
    return rows[1].n
end

function commands.atomic_ok(sock)
    assert(db:exec("drop table if exists pairs"))
    assert(db:exec("create table pairs (k text primary key)"))
    local ok, err, changes = db:atomic({
        { "insert into pairs values (?)", "a" },
        { "insert into pairs values (?)", "b" },
    })
    sock:write(tostring(ok), " ", tostring(err), " ", tostring(changes), " count=", count("pairs"), "\n")
end

function commands.atomic_rollback(sock)
    assert(db:exec("drop table if exists unique_keys"))
    assert(db:exec("create table unique_keys (k text primary key)"))
    assert(db:exec("insert into unique_keys values ('first')"))
    local ok, err = db:atomic({
        { "insert into unique_keys values (?)", "second" },
        { "insert into unique_keys values (?)", "third" },
        { "insert into unique_keys values (?)", "first" }, -- violates the key
    })
    sock:write(tostring(ok), " ", tostring(err), " count=", count("unique_keys"), "\n")
end

function commands.insert(sock, key, value)
    local changes, id = db:exec("insert into kv (k, v) values (?, ?)", key, value)
    if not changes then return sock:write("nil ", tostring(id), "\n") end
    sock:write("ok ", changes, " ", id, "\n")
end

function commands.count(sock)
    sock:write("count ", count("kv"), "\n")
end

function commands.get(sock, key)
    local rows = assert(db:query("select v from kv where k = ?", key))
    if rows[1] then
        sock:write("value ", rows[1].v, "\n")
    else
        sock:write("none\n")
    end
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
