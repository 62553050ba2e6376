-- A line-based chat server:
--   lunet serve server-scripts/chat.lua listen=127.0.0.1:7005
--
-- Commands: /nick NAME, /join ROOM, /who, /quit; any other line is said to
-- the room, which sends "[room] nick: text" to everyone else in it. Joins,
-- leaves and nick changes are announced as "* ..." lines.
--
-- How it is built: every host runs this script; each room is a service
-- (server-scripts/chat_room.lua) named "room:<name>", spawned by whichever
-- host needs it first. A room keeps (host handle, connection key) of its
-- members and sends each line to the member's host with lunet.send; the
-- host's dispatch function appends it to the connection's outbox, and the
-- connection's writer session writes it. So a slow client only ever holds
-- up its own writer, and all output to one client goes out in one order.
local lunet = require "lunet"

-- Resolved from the current directory, then from this script's directory.
local ROOM_SCRIPT = lunet.getenv("room_script", "chat_room.lua")
-- A client that falls this many lines behind is disconnected.
local MAX_PENDING = tonumber(lunet.getenv("max_pending", "10000"))
local MAX_NAME = 32

local host = lunet.self()
local clients = {}       -- connection key -> client
local next_key = 0
local rooms = {}         -- room name -> handle, as this host last found it

-- Output ------------------------------------------------------------------

-- Writes everything in the outbox as one write (which yields only while
-- the peer is slow).
local function flush(client)
    if client.head > client.tail then return true end
    local text = table.concat(client.outbox, "\n", client.head, client.tail) .. "\n"
    for i = client.head, client.tail do client.outbox[i] = nil end
    client.head, client.tail = 1, 0
    return client.sock:write(text)
end

local function push(client, line)
    if client.closed then return end
    client.tail = client.tail + 1
    client.outbox[client.tail] = line
    if client.tail - client.head >= MAX_PENDING then
        -- Too far behind: drop it rather than hold its backlog.
        client.closed = true
        client.sock:close()
    end
    if client.writer then lunet.wakeup(client.writer) end
end

-- The connection's writer session: sleeps until push() wakes it.
local function writer(client)
    client.writer = coroutine.running()
    while true do
        if client.head <= client.tail then
            if not flush(client) then client.closed = true end
        elseif client.closed then
            return
        else
            lunet.wait()
        end
    end
end

-- Messages from rooms: ("deliver", {key, ...}, line).
lunet.dispatch(function(source, command, keys, line)
    if command ~= "deliver" then error("chat: unknown message " .. tostring(command)) end
    for i = 1, #keys do
        local client = clients[keys[i]]
        if client then push(client, line) end
    end
end)

-- Rooms -------------------------------------------------------------------

-- The handle of room `name`, spawning it if nobody has. Two hosts may try
-- at once: lunet.spawn{name=} raises for the one that comes second, which
-- then finds the winner's room by name.
local function find_room(name)
    local handle = rooms[name] or lunet.query("room:" .. name)
    if handle then
        rooms[name] = handle
        return handle
    end
    local ok, spawned = pcall(lunet.spawn, { script = ROOM_SCRIPT, name = "room:" .. name, args = { name } })
    handle = ok and spawned or lunet.query("room:" .. name)
    if not handle then error(spawned, 0) end
    rooms[name] = handle
    return handle
end

-- Calls the room; a stale cached handle (the room died) is dropped and the
-- room found again, once.
local function call_room(name, ...)
    local ok, a = pcall(lunet.call, find_room(name), ...)
    if ok then return a end
    rooms[name] = nil
    return lunet.call(find_room(name), ...)
end

local function leave(client)
    if client.room then
        lunet.send(rooms[client.room] or find_room(client.room), "leave", host, client.key)
        client.room = nil
    end
end

-- Commands ----------------------------------------------------------------

local function valid_name(name)
    return name ~= nil and #name <= MAX_NAME and name:match("^[%w_%-%.]+$") ~= nil
end

local commands = {}

function commands.nick(client, name)
    if not valid_name(name) then
        return push(client, "* a nick is 1-" .. MAX_NAME .. " letters, digits, '_', '-' or '.'")
    end
    client.nick = name
    push(client, "* you are now " .. name)
    if client.room then lunet.send(rooms[client.room], "nick", host, client.key, name) end
end

function commands.join(client, name)
    if not valid_name(name) then
        return push(client, "* a room name is 1-" .. MAX_NAME .. " letters, digits, '_', '-' or '.'")
    end
    if client.room == name then return push(client, "* you are already in " .. name) end
    leave(client)
    local here = call_room(name, "join", host, client.key, client.nick)
    client.room = name
    push(client, "* you joined " .. name .. " (" .. #here .. " here: " .. table.concat(here, ", ") .. ")")
end

function commands.who(client)
    if not client.room then return push(client, "* you are in no room") end
    local here = call_room(client.room, "who")
    push(client, "* in " .. client.room .. ": " .. table.concat(here, ", "))
end

function commands.quit(client)
    push(client, "* bye")
    return "quit"
end

local function handle_line(client, line)
    local command, argument = line:match("^/(%a+)%s*(.-)%s*$")
    if command then
        local run = commands[command]
        if not run then return push(client, "* unknown command /" .. command) end
        return run(client, argument ~= "" and argument or nil)
    end
    if line == "" then return end
    if not client.room then return push(client, "* you are in no room: /join ROOM first") end
    lunet.send(rooms[client.room], "say", host, client.key, line)
end

-- Connections -------------------------------------------------------------

lunet.listen(lunet.getenv("listen", "127.0.0.1:7005"), function(sock)
    next_key = next_key + 1
    local client = {
        sock = sock,
        key = next_key,
        nick = "guest" .. host .. "-" .. next_key,
        outbox = {}, head = 1, tail = 0,
    }
    clients[client.key] = client
    lunet.fork(writer, client)
    push(client, "* welcome, " .. client.nick .. "; commands: /nick NAME, /join ROOM, /who, /quit")

    -- However the session ends (the peer leaves, /quit, an error), the
    -- member leaves its room and the writer ends.
    local ok, err = pcall(function()
        while not client.closed do
            local line = sock:readline()
            if not line then break end
            if handle_line(client, line) == "quit" then break end
        end
    end)
    clients[client.key] = nil
    pcall(leave, client)
    client.closed = true
    flush(client)                 -- what is left, e.g. "* bye"
    if client.writer then lunet.wakeup(client.writer) end
    if not ok then error(err, 0) end
end)
