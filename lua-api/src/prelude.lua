-- lunet's Lua side: what every VM loads when it is built. The rest is
-- built on first use, so that an idle service holds only what it uses:
--
-- * the members of `lunet` (lunet.listen, lunet.call, lunet.json, ...)
--   come from the parts in lua-api/src/prelude/ (and the batteries),
--   loaded by `lunet`'s __index below on the first read of one of them;
-- * socket methods come from prelude/socket.lua, loaded with the first
--   socket;
-- * the standard libraries other than the base library and `string`
--   (table, math, os, io, utf8, package, debug, and the `coroutine` lunet
--   wraps) are opened by the globals' __index on first use
--   (prelude/libraries.lua);
-- * the Rust functions of `core` are made by its own __index
--   (lua-api/src/api/mod.rs) when a part first reads them.
--
-- Every call that may wait is a thin wrapper: it tries the Rust fast path,
-- and only when that says `false` (must wait) does it yield an operation to
-- the scheduler, which resumes the session with the answer. The codes come
-- from lua-api/src/protocol.rs; the other half of the protocol is
-- lua-api/src/host/ (docs/internals.md has the map).

local core, sandboxed = ...
local setmetatable, rawget, rawset, error, type = setmetatable, rawget, rawset, error, type
local ipairs, next = ipairs, next

-- The coroutine functions, taken from the library without making it a
-- global: scripts get lunet's wrapped `coroutine` (prelude/coroutine.lua).
local coroutine_library = core.open_library("coroutine", sandboxed)
local co_yield, isyieldable, co_running =
    coroutine_library.yield, coroutine_library.isyieldable, coroutine_library.running
coroutine_library = nil
core.loaded().coroutine = nil

-- Every lunet wait yields through here: the flag tells a user coroutine's
-- resume (prelude/coroutine.lua) that this yield is lunet's, to be passed
-- up to the scheduler, not handed to the user's code.
local lunet_yield = { false }
local function yield(...)
    lunet_yield[1] = true
    return co_yield(...)
end

local function cannot_wait(what, level)
    error("lunet: " .. what .. " has to wait, but this coroutine cannot yield here: "
        .. "it runs inside a C call (a table.sort comparator, a string.gsub callback, "
        .. "a metamethod or iterator called from C, or a __gc finalizer). "
        .. "Move the call out of that callback.", level or 3)
end

-- Capabilities (lua-api/src/caps.rs): a binding refuses before it looks at
-- its arguments, with the message the Rust half raises too.
local function permitted(capability, what)
    if not core.HELD[capability] then
        error(what .. ": not permitted: spawned without " .. capability, 3)
    end
end

local lunet = {}
local member = core.member

-- What the parts and the batteries share with this chunk.
local internals = {
    core = core, lunet = lunet, sandboxed = sandboxed, yield = yield, lunet_yield = lunet_yield,
    cannot_wait = cannot_wait, permitted = permitted, isyieldable = isyieldable, co_running = co_running,
    -- The handler and the TLS context (lua-api/src/tls.rs) of each listener.
    handlers = {}, listener_tls = {},
}

-- Loads part `name` (prelude/NAME.lua or a battery) into this VM: what it
-- returns, after it put its members in place.
local c_part = core.part
local function load_part(name)
    return c_part(name)(core, lunet, internals)
end
internals.load_part = load_part
-- What the batteries use besides: prelude/net.lua has it.
setmetatable(internals, {
    __index = function(shared, name)
        setmetatable(shared, nil)
        load_part("net")
        return rawget(shared, name)
    end,
})

-- The metatable of socket objects comes from Rust: the codec knows a socket
-- by it (lunet.send/call hand the connection over, see handoff.rs), and
-- makes sockets with it. Its methods (prelude/socket.lua) come with the
-- first method a VM looks up; `__gc` is here, as Lua finalizes only
-- objects whose metatable had it when they got it: a socket no longer
-- referenced from Lua is closed by the scheduler.
local Socket = core.Socket
Socket.__name = "lunet.socket"
Socket.__index = function(_, name)
    Socket.__index = Socket
    load_part("socket")
    return Socket[name]
end
function Socket.__gc(self)
    core.collected(self[1])
end
function Socket.__tostring(self)
    return "lunet.socket(" .. tostring(self[1]) .. ")"
end
internals.Socket = Socket

-- `pool`: the key of the outbound pool the socket may go back to
-- (sock:setkeepalive); nil for accepted sockets.
local function new_socket(id, pool)
    return setmetatable({ id, pool }, Socket)
end
internals.new_socket = new_socket

-- lunet.NAME: a part's function, a battery, or a Rust function of `core`
-- under the same name, made on first use and kept.
setmetatable(lunet, {
    __index = function(module, name)
        local part = member(name)
        if part == true then
            local value = core[name]
            rawset(module, name, value)
            return value
        elseif part then
            local built = part(core, lunet, internals)
            local value = rawget(module, name)
            if value == nil and built ~= nil then
                value = built
                rawset(module, name, value)
            end
            return value
        end
    end,
    -- pairs(lunet) sees every member: they are all made first.
    __pairs = function(module)
        for _, name in ipairs(member("*")) do local _ = module[name] end
        return next, module, nil
    end,
})

local dispatch_fn
function lunet.dispatch(fn)
    if type(fn) ~= "function" then error("lunet.dispatch: expected a function", 2) end
    dispatch_fn = fn
    core.set_dispatch()
end

-- Globals: the standard libraries are opened on first use, through
-- `library` (prelude/libraries.lua), and kept as plain globals.
local library
local function libraries()
    if library == nil then library = load_part("libraries") end
    return library
end
internals.libraries = libraries
setmetatable(_G, {
    __index = function(globals, name)
        local value = libraries()(name)
        if value ~= nil then rawset(globals, name, value) end
        return value
    end,
})
-- A script that reaches for the globals' metatable gets every library
-- first, and its own metatable alone (lua-api/src/globals.rs).
core.on_globals_metatable(function() libraries()("*") end)
-- `require "lunet"` needs no package library.
function require(name)
    if name == "lunet" then return lunet end
    return libraries()("require")(name)
end

-- What the scheduler calls to start a connection's handler.
local handlers, listener_tls = internals.handlers, internals.listener_tls
local function run_handler(listener, id)
    local tls = listener_tls[listener]
    if tls then core.tls_accept(id, tls) end
    return handlers[listener](new_socket(id))
end

-- What the scheduler calls for each message (send or call).
local function run_dispatch(source, ...)
    return dispatch_fn(source, ...)
end

return run_handler, run_dispatch, internals
