-- lunet's Lua side: what every VM loads when it is built, as little as
-- will do. The rest is built on first use, so that an idle service holds
-- only what it uses:
--
-- * what the parts share (prelude/internals.lua: the yield, the
--   capability check, where `lunet.NAME` comes from, ...) is made when a
--   VM first needs any of it;
-- * the members of `lunet` (lunet.listen, lunet.call, lunet.json, ...)
--   come from the parts in lua-api/src/prelude/ (and the batteries),
--   loaded by `lunet`'s __index below on the first read of one of them;
-- * socket methods come from prelude/socket.lua, loaded with the first
--   method a VM looks up;
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
local setmetatable, error, type, tostring = setmetatable, error, type, tostring

local lunet = {}

-- What the parts and the batteries share (prelude/internals.lua).
local internals, new_socket
local function shared()
    if internals == nil then internals = core.part("internals")(core, lunet, sandboxed, new_socket) end
    return internals
end

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
    shared().load_part("socket")
    return Socket[name]
end
function Socket.__gc(self)
    core.collected(self[1])
end
function Socket.__tostring(self)
    return "lunet.socket(" .. tostring(self[1]) .. ")"
end

-- `pool`: the key of the outbound pool the socket may go back to
-- (sock:setkeepalive); nil for accepted sockets. Here, as `setmetatable`
-- is still the base library's: the sandbox's refuses a `__gc`.
function new_socket(id, pool)
    return setmetatable({ id, pool }, Socket)
end

-- lunet.NAME: made on first use and kept; pairs(lunet) makes them all.
setmetatable(lunet, {
    __index = function(module, name) return shared().index_lunet(module, name) end,
    __pairs = function(module) return shared().pairs_lunet(module) end,
})

local dispatch_fn
function lunet.dispatch(fn)
    if type(fn) ~= "function" then error("lunet.dispatch: expected a function", 2) end
    dispatch_fn = fn
    core.set_dispatch()
end

-- Globals: the standard libraries other than the base library and
-- `string` are opened on first use (prelude/libraries.lua).
setmetatable(_G, {
    __index = function(globals, name) return shared().index_globals(globals, name) end,
})
-- A script that reaches for the globals' metatable gets every library
-- first, and its own metatable alone (lua-api/src/globals.rs).
core.on_globals_metatable(function() shared().libraries()("*") end)
-- `require "lunet"` needs no package library.
function require(name)
    if name == "lunet" then return lunet end
    return shared().libraries()("require")(name)
end

-- What the scheduler calls to start a connection's handler.
local function run_handler(listener, id)
    return shared().run_handler(listener, id)
end

-- What the scheduler calls for each message (send or call).
local function run_dispatch(source, ...)
    return dispatch_fn(source, ...)
end

return run_handler, run_dispatch, lunet, shared
