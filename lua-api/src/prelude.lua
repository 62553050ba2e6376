-- lunet's Lua side: the `lunet` module and the socket methods.
--
-- Every call that may wait is a thin wrapper: it tries the Rust fast path,
-- and only when that says `false` (must wait) does it yield an operation to
-- the scheduler, which resumes the session with the answer.
-- See lua-api/src/host.rs for the other half of the protocol.

local core = ...
local yield, isyieldable = coroutine.yield, coroutine.isyieldable
local setmetatable, error, type, select = setmetatable, error, type, select

local OP_READ, OP_WRITE, OP_SLEEP, OP_CONNECT = 1, 2, 3, 4
local READ_LINE, READ_EXACT, READ_UNTIL, READ_SOME = 1, 2, 3, 4

local c_read, c_write, c_close = core.read, core.write, core.close

local function cannot_wait(what)
    error("lunet: " .. what .. " has to wait, but this coroutine cannot yield here: "
        .. "it runs inside a C call (a table.sort comparator, a string.gsub callback, "
        .. "a metamethod or iterator called from C, or a __gc finalizer). "
        .. "Move the call out of that callback.", 3)
end

local Socket = {}
Socket.__index = Socket
Socket.__name = "lunet.socket"

function Socket.__tostring(self)
    return "lunet.socket(" .. tostring(self[1]) .. ")"
end

-- A socket no longer referenced from Lua is closed by the scheduler.
function Socket.__gc(self)
    core.collected(self[1])
end

local function new_socket(id)
    return setmetatable({ id }, Socket)
end

function Socket:readline(max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_LINE, max)
    if data ~= false then return data, err, partial end
    if not isyieldable() then cannot_wait("sock:readline") end
    return yield(OP_READ, id, READ_LINE, max)
end

function Socket:readn(n)
    local id = self[1]
    local data, err, partial = c_read(id, READ_EXACT, n)
    if data ~= false then return data, err, partial end
    if not isyieldable() then cannot_wait("sock:readn") end
    return yield(OP_READ, id, READ_EXACT, n)
end

function Socket:readuntil(delim, max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_UNTIL, max, delim)
    if data ~= false then return data, err, partial end
    if not isyieldable() then cannot_wait("sock:readuntil") end
    return yield(OP_READ, id, READ_UNTIL, max, delim)
end

function Socket:readsome(max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_SOME, max)
    if data ~= false then return data, err, partial end
    if not isyieldable() then cannot_wait("sock:readsome") end
    return yield(OP_READ, id, READ_SOME, max)
end

function Socket:write(...)
    local id = self[1]
    local ok, err = c_write(id, ...)
    if ok ~= false then return ok, err end
    if not isyieldable() then cannot_wait("sock:write") end
    return yield(OP_WRITE, id)
end

function Socket:close()
    return c_close(self[1])
end

function Socket:peer()
    return core.peer(self[1])
end

function Socket:settimeout(ms)
    return core.settimeout(self[1], ms)
end

local lunet = {}

lunet.getenv = core.getenv
lunet.now = core.now
lunet.log = core.log

local handlers = {}

function lunet.listen(addr, handler)
    if type(addr) ~= "string" then error("lunet.listen: address must be a string like '127.0.0.1:7000'", 2) end
    if type(handler) ~= "function" then error("lunet.listen: handler must be a function", 2) end
    local listener, bound = core.listen(addr)
    handlers[listener] = handler
    return bound
end

function lunet.connect(addr, timeout)
    local id, err = core.connect(addr, timeout)
    if not id then return nil, err end
    if not isyieldable() then
        c_close(id)
        cannot_wait("lunet.connect")
    end
    local ok, cerr = yield(OP_CONNECT, id)
    if not ok then
        c_close(id)
        return nil, cerr
    end
    return new_socket(id)
end

function lunet.sleep(ms)
    if type(ms) ~= "number" then error("lunet.sleep: ms must be a number", 2) end
    if not isyieldable() then cannot_wait("lunet.sleep") end
    return yield(OP_SLEEP, ms)
end

function lunet.fork(fn, ...)
    if type(fn) ~= "function" then error("lunet.fork: expected a function", 2) end
    core.fork(fn, ...)
end

function lunet.timeout(ms, fn, ...)
    if type(ms) ~= "number" then error("lunet.timeout: ms must be a number", 2) end
    if type(fn) ~= "function" then error("lunet.timeout: expected a function", 2) end
    local n, args = select("#", ...), { ... }
    core.fork(function()
        yield(OP_SLEEP, ms)
        return fn(table.unpack(args, 1, n))
    end)
end

package.loaded.lunet = lunet

-- What the scheduler calls to start a connection's handler.
local function run_handler(listener, id)
    return handlers[listener](new_socket(id))
end

return run_handler
