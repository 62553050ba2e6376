-- server-scripts/todo.lua: a JSON todo API on SQLite, with lunet.http's
-- router and lunet.json.
--
--   lunet serve server-scripts/todo.lua listen=127.0.0.1:8080 db=todo.sqlite
--
--   GET    /todos               the todos, oldest first (?limit=N, default 100,
--                               at most 1000; ?after=ID for the next page;
--                               ?done=true|false to filter)
--   GET    /todos/:id           one todo
--   POST   /todos               {"title": "...", "done": false} -> 201 + Location
--   PUT    /todos/:id           {"title": "..."} and/or {"done": true}
--   DELETE /todos/:id           -> 204
--
-- A todo is {"id": 1, "title": "...", "done": false}. Bad input is a 400
-- with {"error": "..."}; an unknown todo a 404; another method a 405.
-- Every host opens the same database file; SQLite's WAL lets them share it.

local lunet = require "lunet"
local json = lunet.json

local db = assert(lunet.db.open(lunet.getenv("db", "todo.sqlite")))
assert(db:exec([[
    create table if not exists todos (
        id integer primary key,
        title text not null,
        done integer not null default 0
    )
]]))

local MAX_TITLE = 200
local FIELDS = { title = true, done = true }

local function todo_of(row)
    return { id = row.id, title = row.title, done = row.done == 1 }
end

local function fail(res, status, message)
    res:status(status)
    return res:json({ error = message })
end

-- The request's JSON object, or nil and the 400's message.
local function decode_object(req)
    local body, err = req:body()
    if not body then return nil, err end
    if body == "" then return nil, "a JSON object is expected" end
    local value, decode_error = json.decode(body)
    if value == nil then return nil, "invalid JSON: " .. decode_error end
    if type(value) ~= "table" or getmetatable(value) == json.array_mt then
        return nil, "a JSON object is expected"
    end
    for key in pairs(value) do
        if not FIELDS[key] then return nil, "unknown field '" .. tostring(key) .. "'" end
    end
    if value.title ~= nil then
        if type(value.title) ~= "string" or value.title == "" then
            return nil, "title must be a non-empty string"
        end
        if #value.title > MAX_TITLE then
            return nil, "title is longer than " .. MAX_TITLE .. " bytes"
        end
    end
    if value.done ~= nil and type(value.done) ~= "boolean" then
        return nil, "done must be true or false"
    end
    return value
end

-- The :id parameter as an integer, or nil.
local function id_of(req)
    local id = tonumber(req.params.id)
    if id and id >= 1 and id == math.floor(id) and id < 2^53 then return math.tointeger(id) end
end

local function find(id)
    local rows, err = db:query("select id, title, done from todos where id = ?", id)
    if not rows then return nil, err end
    return rows[1] and todo_of(rows[1])
end

local r = lunet.http.router()

r:get("/todos", function(req, res)
    local limit = tonumber(req.query.limit or 100)
    local after = tonumber(req.query.after or 0)
    local done = req.query.done
    if not limit or limit < 1 or limit > 1000 or not after then
        return fail(res, 400, "limit must be 1-1000 and after an id")
    end
    local sql, binds = "select id, title, done from todos where id > ?", { after }
    if done == "true" or done == "false" then
        sql = sql .. " and done = ?"
        binds[#binds + 1] = done == "true" and 1 or 0
    elseif done ~= nil then
        return fail(res, 400, "done must be true or false")
    end
    binds[#binds + 1] = math.floor(limit)
    local rows, err = db:query(sql .. " order by id limit ?", table.unpack(binds))
    if not rows then return fail(res, 500, err) end
    local todos = setmetatable({}, json.array_mt)
    for i, row in ipairs(rows) do todos[i] = todo_of(row) end
    res:json(todos)
end)

r:get("/todos/:id", function(req, res)
    local id = id_of(req)
    if not id then return fail(res, 404, "no such todo") end
    local todo, err = find(id)
    if err then return fail(res, 500, err) end
    if not todo then return fail(res, 404, "no such todo") end
    res:json(todo)
end)

r:post("/todos", function(req, res)
    local value, err = decode_object(req)
    if not value then return fail(res, 400, err) end
    if value.title == nil then return fail(res, 400, "title is required") end
    local _, id = db:exec("insert into todos (title, done) values (?, ?)", value.title, value.done and 1 or 0)
    if not id then return fail(res, 500, "insert failed") end
    res:status(201)
    res:header("Location", "/todos/" .. id)
    res:json({ id = id, title = value.title, done = value.done == true })
end)

r:put("/todos/:id", function(req, res)
    local id = id_of(req)
    if not id then return fail(res, 404, "no such todo") end
    local value, err = decode_object(req)
    if not value then return fail(res, 400, err) end
    if value.title == nil and value.done == nil then
        return fail(res, 400, "nothing to change: give title and/or done")
    end
    local done = nil
    if value.done ~= nil then done = value.done and 1 or 0 end
    local changes, update_error = db:exec(
        "update todos set title = coalesce(?, title), done = coalesce(?, done) where id = ?",
        value.title, done, id)
    if not changes then return fail(res, 500, update_error) end
    if changes == 0 then return fail(res, 404, "no such todo") end
    local todo = find(id)
    if not todo then return fail(res, 404, "no such todo") end
    res:json(todo)
end)

r:delete("/todos/:id", function(req, res)
    local id = id_of(req)
    if not id then return fail(res, 404, "no such todo") end
    local changes, err = db:exec("delete from todos where id = ?", id)
    if not changes then return fail(res, 500, err) end
    if changes == 0 then return fail(res, 404, "no such todo") end
    res:status(204):send()
end)

lunet.http.listen(lunet.getenv("listen", "127.0.0.1:8080"), r)
