-- lunet serve iso_loops.lua --slice-kill ...: issue 9, row 4. A connection
-- sends the name of a loop; the handler runs it (it never returns unless
-- interrupted) or answers "pong" to "ping".
local lunet = require "lunet"

local function spin() while true do end end

local loops = {
    sort = function() table.sort({ 3, 2, 1 }, function() spin() end) end,
    gsub = function() return ("abc"):gsub(".", function() spin() end) end,
    xpcall = function() return xpcall(error, function() spin() end) end,
    tostring = function() return tostring(setmetatable({}, { __tostring = function() spin() end })) end,
    wrap = function() return coroutine.wrap(spin)() end,
    resume = function()
        while true do coroutine.resume(coroutine.create(spin)) end
    end,
    pcall_loop = function()
        while true do pcall(spin) end
    end,
    nested = function()
        return coroutine.wrap(function()
            return coroutine.wrap(function() pcall(table.sort, { 2, 1 }, spin) end)()
        end)()
    end,
}

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local line = sock:readline()
    if line == "ping" then return sock:write("pong\n") end
    local loop = loops[line]
    if not loop then return sock:write("no such loop\n") end
    loop()
    sock:write("the loop returned\n")
end)
