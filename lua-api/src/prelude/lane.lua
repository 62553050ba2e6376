-- lunet.db, lunet.fs, lunet.resolve, lunet.lane and lunet.shared (part of
-- prelude.lua, loaded on first use of one). Blocking work runs on the
-- lane; the session yields meanwhile. Misuse (say, a table as a bind
-- value) comes back marked and raises here.

local core, lunet, internals = ...
local yield, cannot_wait, isyieldable, permitted =
    internals.yield, internals.cannot_wait, internals.isyieldable, internals.permitted
local error, type, setmetatable = error, type, setmetatable
local LANE, OP_LANE = core.LANE, core.OP.LANE

-- Shared dicts: state shared by every VM (no yield: one shard lock).
lunet.shared = { dict = core.shared_dict }

local MISUSE = "lunet:misuse"
local function lane_result(a, b, c, ...)
    if a == nil and c == MISUSE then error(b, 2) end
    return a, b, c, ...
end

-- Wrappers tail-call lane_result so that an error points at their caller.
local function lane(what, ...)
    if not isyieldable() then cannot_wait(what, 4) end
    return yield(OP_LANE, ...)
end

local function check_string(value, what)
    if type(value) ~= "string" then error(what .. " must be a string, got " .. type(value), 3) end
end
-- For the runtime model (prelude/model.lua).
internals.lane, internals.lane_result, internals.check_string = lane, lane_result, check_string

local Db = {}
Db.__index = Db
Db.__name = "lunet.db"

function Db:exec(sql, ...)
    permitted("db", "db:exec")
    check_string(sql, "db:exec: sql")
    return lane_result(lane("db:exec", LANE.DB_EXEC, self.path, sql, ...))
end

function Db:query(sql, ...)
    permitted("db", "db:query")
    check_string(sql, "db:query: sql")
    return lane_result(lane("db:query", LANE.DB_QUERY, self.path, sql, ...))
end

function Db:atomic(statements)
    permitted("db", "db:atomic")
    if type(statements) ~= "table" then error("db:atomic: expected a list of {sql, ...} statements", 2) end
    return lane_result(lane("db:atomic", LANE.DB_ATOMIC, self.path, statements))
end

function Db:__tostring()
    return "lunet.db(" .. self.path .. ")"
end

lunet.db = {}

function lunet.db.open(path)
    permitted("db", "lunet.db.open")
    check_string(path, "lunet.db.open: path")
    local ok, err = lane_result(lane("lunet.db.open", LANE.DB_OPEN, path))
    if not ok then return nil, err end
    return setmetatable({ path = path }, Db)
end

lunet.fs = {}

function lunet.fs.read(path)
    permitted("fs", "lunet.fs.read")
    check_string(path, "lunet.fs.read: path")
    return lane_result(lane("lunet.fs.read", LANE.FS_READ, path))
end

function lunet.fs.write(path, data)
    permitted("fs", "lunet.fs.write")
    check_string(path, "lunet.fs.write: path")
    check_string(data, "lunet.fs.write: data")
    return lane_result(lane("lunet.fs.write", LANE.FS_WRITE, path, data))
end

function lunet.resolve(host)
    permitted("net", "lunet.resolve")
    check_string(host, "lunet.resolve: host")
    return lane_result(lane("lunet.resolve", LANE.RESOLVE, host))
end

lunet.lane = {}

function lunet.lane.sleep(ms)
    permitted("lane", "lunet.lane.sleep")
    if type(ms) ~= "number" then error("lunet.lane.sleep: ms must be a number", 2) end
    return lane_result(lane("lunet.lane.sleep", LANE.SLEEP, ms))
end
