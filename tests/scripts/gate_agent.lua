-- An agent of gate.lua: takes sockets handed over by the gate and answers
-- every line with "agent-HANDLE NAME: LINE". The line "exit" makes the
-- agent exit (closing every socket it holds).
local lunet = require "lunet"

local me = "agent-" .. lunet.self()
local sockets = {}

local function serve(sock, name)
    while true do
        local line = sock:readline()
        if not line then break end
        if line == "exit" then lunet.exit() end
        sock:write(me, " ", name, ": ", line, "\n")
    end
    sockets[name] = nil
    sock:close()
end

lunet.dispatch(function(source, command, a, b)
    if command == "take" then
        local sock, name = a, b
        if type(a) == "table" and getmetatable(a) == nil then sock, name = a.sock, a.name end
        sockets[name] = sock
        lunet.fork(serve, sock, name)
        return "taken"
    elseif command == "say" then
        return sockets[a]:write(b, "\n")
    end
end)
