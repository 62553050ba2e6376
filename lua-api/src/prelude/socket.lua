-- The socket methods (part of prelude.lua, loaded with the first method
-- a VM looks up). A read that had to wait is resumed with `true` once its answer
-- is buffered, and takes it with the fast path (lua-api/src/read.rs,
-- Taken::Buffered); a failure comes back as `nil, err [, partial]`.

local core, lunet, internals = ...
local Socket, yield, cannot_wait, isyieldable =
    internals.Socket, internals.yield, internals.cannot_wait, internals.isyieldable
local error = error

local OP, READ = core.OP, core.READ
local OP_READ = OP.READ
local READ_LINE, READ_EXACT, READ_UNTIL, READ_SOME = READ.LINE, READ.EXACT, READ.UNTIL, READ.SOME
local c_read, c_write, c_close = core.read, core.write, core.close

function Socket:readline(max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_LINE, max)
    while data == false do
        if not isyieldable() then cannot_wait("sock:readline") end
        data, err, partial = yield(OP_READ, id)
        if data == true then data, err, partial = c_read(id, READ_LINE, max) end
    end
    return data, err, partial
end

function Socket:readn(n)
    local id = self[1]
    local data, err, partial = c_read(id, READ_EXACT, n)
    while data == false do
        if not isyieldable() then cannot_wait("sock:readn") end
        data, err, partial = yield(OP_READ, id)
        if data == true then data, err, partial = c_read(id, READ_EXACT, n) end
    end
    return data, err, partial
end

function Socket:readuntil(delim, max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_UNTIL, max, delim)
    while data == false do
        if not isyieldable() then cannot_wait("sock:readuntil") end
        data, err, partial = yield(OP_READ, id)
        if data == true then data, err, partial = c_read(id, READ_UNTIL, max, delim) end
    end
    return data, err, partial
end

function Socket:readsome(max)
    local id = self[1]
    local data, err, partial = c_read(id, READ_SOME, max)
    while data == false do
        if not isyieldable() then cannot_wait("sock:readsome") end
        data, err, partial = yield(OP_READ, id)
        if data == true then data, err, partial = c_read(id, READ_SOME, max) end
    end
    return data, err, partial
end

-- A read method of one kind with one optional size argument, on `fast`.
local function read_method(fast, kind, what)
    return function(self, size)
        local id = self[1]
        local data, err, extra = fast(id, kind, size)
        while data == false do
            if not isyieldable() then cannot_wait(what) end
            data, err, extra = yield(OP_READ, id)
            if data == true then data, err, extra = fast(id, kind, size) end
        end
        return data, err, extra
    end
end

-- sock:readresp([max_bulk]): one RESP command as a table of strings (a
-- raw C function: it runs once per command of a RESP server). A wait ends
-- with `true` when a whole command is buffered: the fast path takes it.
local c_readresp = core.readresp
function Socket:readresp(max_bulk)
    local id = self[1]
    while true do
        local command, err = c_readresp(id, max_bulk)
        if command ~= false then return command, err end
        if not isyieldable() then cannot_wait("sock:readresp") end
        local ready, wait_err = yield(OP_READ, id)
        if ready ~= true then return ready, wait_err end
    end
end
-- sock:readreply(): one RESP reply as a Lua value (nil, text, true: an error reply).
Socket.readreply = read_method(core.read_value, READ.REPLY, "sock:readreply")
-- sock:handshake(): true once the TLS handshake is done.
Socket.handshake = read_method(c_read, READ.HANDSHAKE, "sock:handshake")

local write_again = internals.write_again
function Socket:write(...)
    local id = self[1]
    local ok, err = c_write(id, ...)
    if ok ~= false then return ok, err end
    ok, err = write_again(c_write, id, ...)
    return ok, err
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

-- sock:setkeepalive([idle_ms [, size]]): back to lunet.connect's pool.
local MISUSE = "lunet:misuse"
function Socket:setkeepalive(idle_ms, size)
    local pool = self[2]
    if pool == nil then
        error("sock:setkeepalive: only connections made by lunet.connect go back to a pool", 2)
    end
    local ok, err, misuse = core.setkeepalive(self[1], pool, idle_ms, size)
    if misuse == MISUSE then error(err, 2) end
    if ok then return true end
    return nil, err
end
