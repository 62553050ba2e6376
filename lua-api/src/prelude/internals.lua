-- What lunet's parts and batteries share (part of prelude.lua, made the
-- first time a VM needs it: a member of `lunet` other than `dispatch`, a
-- socket method, a standard library, a listener's connection). Returns
-- the table `internals`; each part is called with (core, lunet, internals).
-- A part reads the globals when it is loaded: what it must take before a
-- script or the sandbox changes them comes from prelude.lua (`new_socket`).

local core, lunet, sandboxed, new_socket = ...
local setmetatable, rawget, rawset, error, ipairs, next = setmetatable, rawget, rawset, error, ipairs, next

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

-- A write the socket cannot take now (`false`: past --high-water, or other
-- writers wait ahead; nothing was queued) waits for room and is made
-- again, until it is taken or fails; a writer that cannot wait gets
-- "overloaded" (the write bound: lua-api/src/api/socket.rs, admit). Returns
-- what the last `write(id, ...)` returned, or nil, err.
local OP_WRITE = core.OP.WRITE
local function write_again(write, id, ...)
    while true do
        if not isyieldable() then return nil, "overloaded" end
        local ready, err = yield(OP_WRITE, id)
        if not ready then return nil, err end
        local ok, write_err, extra = write(id, ...)
        if ok ~= false then return ok, write_err, extra end
    end
end

local internals = {
    core = core, lunet = lunet, sandboxed = sandboxed, yield = yield, lunet_yield = lunet_yield,
    cannot_wait = cannot_wait, permitted = permitted, isyieldable = isyieldable, co_running = co_running,
    write_again = write_again,
    Socket = core.Socket, new_socket = new_socket,
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


-- lunet.NAME (lunet's __index): a part's function, a battery, or a Rust
-- function of `core` under the same name, made on first use and kept.
local member = core.member
function internals.index_lunet(module, name)
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
end

-- pairs(lunet) sees every member: they are all made first.
function internals.pairs_lunet(module)
    for _, name in ipairs(member("*")) do local _ = module[name] end
    return next, module, nil
end

-- Globals: the standard libraries are opened on first use, through
-- `library` (prelude/libraries.lua), and kept as plain globals.
local library
local function libraries()
    if library == nil then library = load_part("libraries") end
    return library
end
internals.libraries = libraries
function internals.index_globals(globals, name)
    local value = libraries()(name)
    if value ~= nil then rawset(globals, name, value) end
    return value
end

-- What the scheduler calls to start a connection's handler.
local handlers, listener_tls = internals.handlers, internals.listener_tls
function internals.run_handler(listener, id)
    local tls = listener_tls[listener]
    if tls then core.tls_accept(id, tls) end
    return handlers[listener](new_socket(id))
end

-- What the batteries use besides: prelude/net.lua has it.
setmetatable(internals, {
    __index = function(shared, name)
        setmetatable(shared, nil)
        load_part("net")
        return rawget(shared, name)
    end,
})

return internals
