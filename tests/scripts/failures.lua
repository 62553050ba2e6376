-- Line echo with commands that fail on purpose; the server must log the
-- failure, close that connection, and keep serving the others.
local lunet = require "lunet"

local commands = {}

function commands.boom()
    error("boom requested by the test")
end

function commands.boom_table()
    error({ "not a string" })
end

function commands.sort_yield()
    local values = { 3, 1, 2 }
    table.sort(values, function(a, b)
        lunet.sleep(1)
        return a < b
    end)
end

function commands.gsub_yield()
    string.gsub("abc", "%w", function(c)
        lunet.sleep(1)
        return c
    end)
end

-- Lua 5.4 can yield across pcall: this one must work.
function commands.pcall_yield(sock)
    local ok, value = pcall(function()
        lunet.sleep(5)
        return "slept"
    end)
    sock:write(tostring(ok), " ", tostring(value), "\n")
end

function commands.fork_boom(sock)
    lunet.fork(function()
        error("boom in a forked session")
    end)
    lunet.sleep(20)
    sock:write("handler alive\n")
end

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then
            return
        end
        local command = commands[line]
        if command then
            command(sock)
        else
            sock:write(line, "\n")
        end
    end
end)
