-- The attacks of issue 9 from inside a spawned service (sandboxed unless its
-- spawner says otherwise). `lunet.call(h, attack, ...)` runs one and answers
-- "ok <what it got>" or "error <message>".
local lunet = require "lunet"

local attacks = {}

function attacks.read_passwd()
    return lunet.fs.read("/etc/passwd")
end

function attacks.write_file(path)
    return lunet.fs.write(path, "written by a sandbox\n")
end

-- SQLite creates the file it ATTACHes.
function attacks.attach(path)
    local db = assert(lunet.db.open(path .. ".main"))
    return db:exec("ATTACH DATABASE '" .. path .. "' AS other")
end

function attacks.listen()
    return lunet.listen("127.0.0.1:0", function(sock) sock:write("served by a sandbox\n") end)
end

function attacks.connect(addr)
    local sock, err = lunet.connect(addr, 2000)
    if not sock then return nil, err end
    sock:write("hello from a sandbox\n")
    sock:close()
    return "connected"
end

function attacks.resolve()
    return lunet.resolve("localhost")[1]
end

function attacks.getenv()
    return lunet.getenv("secret")
end

function attacks.dict_read()
    return lunet.shared.dict("kv"):get("k")
end

function attacks.dict_flush()
    return lunet.shared.dict("kv"):flush()
end

function attacks.lane_sleep()
    return lunet.lane.sleep(1)
end

-- The lane call by hand, past the Lua wrapper: (OP.LANE = 5, LANE.FS_READ = 5).
function attacks.raw_lane_yield()
    local data, err = coroutine.yield(5, 5, "/etc/passwd")
    if data == nil then error(err, 0) end
    return data
end

-- Issue 9, row 1: write a script, spawn it trusted, run a command.
function attacks.escalate(path)
    assert(lunet.fs.write(path, [[
        local lunet = require "lunet"
        local id = io.popen("id"):read("*a")
        lunet.dispatch(function() return id end)
    ]]))
    local child = lunet.spawn { script = path, trusted = true }
    return lunet.call(child, "id")
end

function attacks.grant(caps_name)
    local child = lunet.spawn { script = "iso_attacker.lua", caps = { [caps_name] = true } }
    return "spawned " .. tostring(child)
end

function attacks.grant_memory(bytes)
    local child = lunet.spawn { script = "iso_attacker.lua", memory = bytes }
    return "spawned " .. tostring(child)
end

-- Grows a dict of 2 GB capacity with 1 MiB values; answers how far it got.
function attacks.big_dict(megabytes)
    local dict = lunet.shared.dict("iso_big", 2 * 1024 * 1024 * 1024)
    local chunk = string.rep("d", 1024 * 1024)
    local stored, err = 0, nil
    for i = 1, megabytes do
        local ok
        ok, err = dict:set("k" .. i, chunk)
        if not ok then break end
        stored = i
    end
    return "stored " .. stored .. " MiB, used " .. dict:used() .. ", then " .. tostring(err)
end

function attacks.kill(target)
    return lunet.kill(target)
end

function attacks.register(name)
    return lunet.register(name)
end

local function answer(ok, ...)
    if not ok then return "error " .. tostring((...)):gsub("\n.*", "") end
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    return "ok " .. table.concat(parts, " ")
end

lunet.dispatch(function(_, attack, ...)
    if attack == "ping" then return "pong" end
    if attack == "raw_lane_yield" then
        -- At the session's level, where the yield reaches the scheduler.
        return answer(pcall(attacks.raw_lane_yield))
    end
    return answer(pcall(attacks[attack], ...))
end)
