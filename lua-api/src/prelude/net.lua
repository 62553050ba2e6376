-- lunet.listen, lunet.connect, lunet.sleep, lunet.fork, lunet.timeout,
-- lunet.on_shutdown (part of prelude.lua, loaded on first use of one).

local core, lunet, internals = ...
local yield, cannot_wait, isyieldable, permitted, new_socket =
    internals.yield, internals.cannot_wait, internals.isyieldable, internals.permitted, internals.new_socket
local handlers, listener_tls = internals.handlers, internals.listener_tls
local error, type, tostring, select, setmetatable, pairs, pcall = error, type, tostring, select, setmetatable, pairs, pcall

local OP, READ = core.OP, core.READ
local OP_READ, OP_SLEEP, OP_CONNECT, OP_WAIT = OP.READ, OP.SLEEP, OP.CONNECT, OP.WAIT

-- lunet.listen(addr, handler) or lunet.listen(addr, {tls = {cert=, key=}}, handler)
function lunet.listen(addr, options, handler)
    permitted("listen", "lunet.listen")
    if handler == nil then options, handler = nil, options end
    if type(addr) ~= "string" then error("lunet.listen: address must be a string like '127.0.0.1:7000'", 2) end
    if options ~= nil and type(options) ~= "table" then error("lunet.listen: options must be a table", 2) end
    if type(handler) ~= "function" then error("lunet.listen: handler must be a function", 2) end
    local tls = options and options.tls
    if tls ~= nil and type(tls) ~= "table" then error("lunet.listen: tls must be a table {cert=, key=}", 2) end
    local context = tls and core.tls_server(tls)
    local listener, bound = core.listen(addr)
    handlers[listener] = handler
    listener_tls[listener] = context
    return bound
end

-- What a TLS connection was made with, as a part of its pool key: a
-- connection verified one way is never handed to a caller that asked for
-- another. `tls` is lunet.connect's option (a table, or true for {}); a
-- server_name left out is the host of the address, which the key has.
local function tls_identity(tls)
    if type(tls) ~= "table" then return "#tls" end
    return "#tls|" .. tostring(tls.server_name or "") .. "|" .. tostring(tls.verify ~= false)
        .. "|" .. tostring(tls.ca or "")
end

-- lunet.connect(addr [, timeout_ms]) or
-- lunet.connect(addr, {timeout = ms, bind = "127.0.0.2", pool = "name", tls = {...}})
function lunet.connect(addr, options)
    permitted("net", "lunet.connect")
    local timeout, bind, pool, tls = options, nil, nil, nil
    if type(options) == "table" then
        timeout, bind, pool, tls = options.timeout, options.bind, options.pool, options.tls
    end
    -- A connection sock:setkeepalive put back (lua-api/src/pool.rs).
    if type(addr) ~= "string" then error("lunet.connect: address must be a string like '127.0.0.1:6379'", 2) end
    -- Without a pool name, a TLS connection is pooled apart from a plain
    -- one, per TLS settings.
    if pool == nil and tls then pool = addr .. tls_identity(tls) end
    pool = tostring(pool or addr) .. (bind and ("@" .. tostring(bind)) or "")
    local pooled = core.pool_take(pool, timeout)
    if pooled then return new_socket(pooled, pool) end
    local id, err = core.connect(addr, timeout, bind)
    if not id then return nil, err end
    if not isyieldable() then
        core.close(id)
        cannot_wait("lunet.connect")
    end
    local ok, cerr = yield(OP_CONNECT, id)
    if ok and tls then
        -- A bad option raises: the connection made for it is closed first.
        local checked
        checked, ok, cerr = pcall(core.tls_connect, id, tls, addr)
        if not checked then
            core.close(id)
            error(ok, 0)
        end
        if ok then
            local done, herr = core.read(id, READ.HANDSHAKE)
            if done == false then done, herr = yield(OP_READ, id) end
            ok, cerr = done, herr
        end
    end
    if not ok then
        core.close(id)
        return nil, cerr
    end
    return new_socket(id, pool)
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

-- A timer of lunet.timeout. `done`: it fired or was cancelled; `co`: its
-- session while it waits, so that cancel can end that wait at once.
local Timer = {}
Timer.__index = Timer
Timer.__name = "lunet.timer"

-- True if the timer had neither fired nor been cancelled: fn never runs.
function Timer:cancel()
    if self.done then return false end
    self.done = true
    local co = self.co
    if co then core.wakeup(co) end
    return true
end

local co_running = internals.co_running
function lunet.timeout(ms, fn, ...)
    if type(ms) ~= "number" then error("lunet.timeout: ms must be a number", 2) end
    if type(fn) ~= "function" then error("lunet.timeout: expected a function", 2) end
    local n, args = select("#", ...), { ... }
    local timer = setmetatable({ done = false }, Timer)
    core.fork(function()
        if timer.done then return end
        if ms > 0 then
            -- lunet.wait with a deadline: the deadline or cancel ends it.
            local co = co_running()
            timer.co = co
            yield(OP_WAIT, co, ms)
            timer.co = nil
        else
            yield(OP_SLEEP, ms)
        end
        if timer.done then return end
        timer.done = true
        return fn(table.unpack(args, 1, n))
    end)
    return timer
end

function lunet.on_shutdown(fn)
    if type(fn) ~= "function" then error("lunet.on_shutdown: expected a function", 2) end
    core.on_shutdown(fn)
end

-- For the batteries (they find these in `internals`, which loads this
-- part for them). A battery's read that may wait: `fast(id, arg [,
-- wait_error])` answers false when it parked a read (read.rs: Fill); each
-- false yields OP_READ on connection `id` and calls again with the wait's
-- error, if any.
function internals.until_read(what, fast, id, arg)
    local a, b, c = fast(id, arg)
    while a == false do
        if not isyieldable() then cannot_wait(what, 4) end
        local _, wait_error = yield(OP_READ, id)
        a, b, c = fast(id, arg, wait_error)
    end
    return a, b, c
end

-- The batteries' TLS clients (https, wss) go through these three, with
-- the `tls` option of their caller ({ca=, verify=, server_name=,
-- handshake_timeout=}, as lunet.connect's).
-- tls_check(tls, what): a bad option raises at the caller of `what`,
-- before anything is connected.
local TLS_OPTION_TYPES = { server_name = "string", ca = "string", verify = "boolean", handshake_timeout = "number" }
function internals.tls_check(tls, what)
    if tls == nil then return end
    if type(tls) ~= "table" then error(what .. ": tls must be a table {ca=, verify=, server_name=}", 3) end
    for key, kind in pairs(TLS_OPTION_TYPES) do
        local value = tls[key]
        if value ~= nil and type(value) ~= kind then
            error(what .. ": tls." .. key .. " must be a " .. kind .. ", got " .. type(value), 3)
        end
    end
end
-- tls_options(tls, host): the options of one connection to `host` (the
-- URL's: the default server name) and the part of a pool key that names
-- them.
function internals.tls_options(tls, host)
    local options = { server_name = host }
    if tls then
        options.server_name = tls.server_name or host
        options.ca, options.verify, options.handshake_timeout = tls.ca, tls.verify, tls.handshake_timeout
    end
    return options, tls_identity(options)
end
-- tls_connect(address, options, timeout, pool): connected, handshake done.
function internals.tls_connect(address, options, timeout, pool)
    return lunet.connect(address, { timeout = timeout, pool = pool, tls = options })
end
