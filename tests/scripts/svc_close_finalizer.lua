-- A service exits holding a socket and garbage whose finalizer calls the
-- socket's methods: the finalizers run while its VM closes, which must
-- neither crash the process nor reach the VM's state. (A sandboxed service
-- may not set __gc: there only the socket's own finalizer runs.) Prints
-- key=value lines for tests/services.rs.
local lunet = require "lunet"

local child = [[
local lunet = require "lunet"
local target = ...
HOLD = assert(lunet.connect(target, 2000))
_, KEEP = pcall(setmetatable, {}, { __gc = function()
    pcall(HOLD.write, HOLD, "from a finalizer\n")
    pcall(HOLD.peer, HOLD)
end })
lunet.dispatch(function(_, command)
    if command == "exit" then lunet.exit() end
end)
]]

local closed = false
local addr = lunet.listen("127.0.0.1:0", function(sock)
    while sock:readline() do end
    closed = true
end)
local path = os.tmpname()
local file = assert(io.open(path, "w"))
file:write(child)
file:close()
for _, trusted in ipairs { false, true } do
    closed = false
    local service = lunet.spawn {
        script = path, args = { addr }, trusted = trusted, caps = not trusted and { net = true } or nil,
    }
    lunet.send(service, "exit")
    while not closed do lunet.sleep(5) end
    print("closed_" .. tostring(trusted) .. "=true")
end
os.remove(path)
print("alive=true")
lunet.exit()
