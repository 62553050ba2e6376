-- One chat room: a service that server-scripts/chat.lua spawns, named
-- "room:<name>", the first time someone joins <name>. It knows its members
-- as (host handle, connection key) pairs and sends every line to the hosts
-- with lunet.send; each host writes it to its own sockets.
--
-- Messages from one service arrive in the order sent, so what one member
-- says reaches every other member in the order it was said, and a member
-- sees its own join notice before anything said after it.
local lunet = require "lunet"

local room = ...
local members = {}    -- host handle -> { [connection key] = nick }

-- Sends `line` to every member but (except_host, except_key): one message
-- per host, carrying the keys of that host's members.
local function broadcast(line, except_host, except_key)
    for host, nicks in pairs(members) do
        local keys = {}
        for key in pairs(nicks) do
            if host ~= except_host or key ~= except_key then keys[#keys + 1] = key end
        end
        if #keys > 0 and not lunet.send(host, "deliver", keys, line) then
            -- The host is gone (only at shutdown): forget its members.
            members[host] = nil
        end
    end
end

local function nick_of(host, key)
    local nicks = members[host]
    return nicks and nicks[key]
end

local function nicks_here()
    local list = {}
    for _, nicks in pairs(members) do
        for _, nick in pairs(nicks) do list[#list + 1] = nick end
    end
    table.sort(list)
    return list
end

local commands = {}

-- call: adds a member, tells the others; returns the nicks now here.
function commands.join(host, key, nick)
    if nick_of(host, key) then return nicks_here() end
    broadcast("* " .. nick .. " joined " .. room)
    members[host] = members[host] or {}
    members[host][key] = nick
    return nicks_here()
end

function commands.leave(host, key)
    local nick = nick_of(host, key)
    if not nick then return end
    members[host][key] = nil
    if next(members[host]) == nil then members[host] = nil end
    broadcast("* " .. nick .. " left " .. room)
end

function commands.say(host, key, text)
    local nick = nick_of(host, key)
    if not nick then return end
    broadcast("[" .. room .. "] " .. nick .. ": " .. text, host, key)
end

function commands.nick(host, key, new)
    local old = nick_of(host, key)
    if not old then return end
    members[host][key] = new
    broadcast("* " .. old .. " is now known as " .. new, host, key)
end

function commands.who()
    return nicks_here()
end

lunet.dispatch(function(source, command, ...)
    local handler = commands[command]
    if not handler then error("chat_room: unknown command " .. tostring(command)) end
    return handler(...)
end)
