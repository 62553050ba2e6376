-- lunet's Lua side: the `lunet` module and the socket methods.
--
-- Every call that may wait is a thin wrapper: it tries the Rust fast path,
-- and only when that says `false` (must wait) does it yield an operation to
-- the scheduler, which resumes the session with the answer. A read's
-- arguments are checked once, by the fast path, which keeps the request for
-- the scheduler: the wrapper then yields only (OP_READ, id).
-- The codes come from lua-api/src/protocol.rs; the other half of the
-- protocol is lua-api/src/host/ (docs/internals.md has the map).

local core = ...
local co_create, co_resume, co_yield, co_status, co_running, co_close =
    coroutine.create, coroutine.resume, coroutine.yield, coroutine.status, coroutine.running, coroutine.close
local isyieldable = coroutine.isyieldable

-- Every lunet wait yields through here: the flag tells a user coroutine's
-- resume (below) that this yield is lunet's, to be passed up to the
-- scheduler, not handed to the user's code.
local lunet_yield = false
local function yield(...)
    lunet_yield = true
    return co_yield(...)
end
local setmetatable, error, type, select = setmetatable, error, type, select

-- The codes of the protocol come from Rust (lua-api/src/protocol.rs).
local OP, READ, LANE = core.OP, core.READ, core.LANE
local OP_READ, OP_WRITE, OP_SLEEP, OP_CONNECT = OP.READ, OP.WRITE, OP.SLEEP, OP.CONNECT
local OP_LANE, OP_CALL, OP_WAIT, OP_EXIT = OP.LANE, OP.CALL, OP.WAIT, OP.EXIT
local READ_LINE, READ_EXACT, READ_UNTIL, READ_SOME = READ.LINE, READ.EXACT, READ.UNTIL, READ.SOME

local c_read, c_write, c_close = core.read, core.write, core.close

-- Capabilities (lua-api/src/caps.rs): a binding refuses before it looks at
-- its arguments, with the message the Rust half raises too.
local HELD = core.HELD
local function permitted(capability, what)
    if not HELD[capability] then
        error(what .. ": not permitted: spawned without " .. capability, 3)
    end
end

local function cannot_wait(what, level)
    error("lunet: " .. what .. " has to wait, but this coroutine cannot yield here: "
        .. "it runs inside a C call (a table.sort comparator, a string.gsub callback, "
        .. "a metamethod or iterator called from C, or a __gc finalizer). "
        .. "Move the call out of that callback.", level or 3)
end

-- The metatable of socket objects comes from Rust: the codec knows a socket
-- by it (lunet.send/call hand the connection over, see handoff.rs).
local Socket = core.Socket
Socket.__index = Socket
Socket.__name = "lunet.socket"

function Socket.__tostring(self)
    return "lunet.socket(" .. tostring(self[1]) .. ")"
end

-- A socket no longer referenced from Lua is closed by the scheduler.
function Socket.__gc(self)
    core.collected(self[1])
end

-- `pool`: the key of the outbound pool the socket may go back to
-- (sock:setkeepalive); nil for accepted sockets.
local function new_socket(id, pool)
    return setmetatable({ id, pool }, Socket)
end

-- A read that had to wait is resumed with `true` once its answer is
-- buffered, and takes it with the fast path (lua-api/src/read.rs,
-- Taken::Buffered); a failure comes back as `nil, err [, partial]`.
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

-- lunet.log(level, ...): the values as `print` shows them (tostring,
-- tab-separated) on one log line at `level`.
local LOG_LEVELS, LOG_LEVEL_NAMES, c_log = core.LOG_LEVELS, core.LOG_LEVEL_NAMES, core.log
local tostring, concat = tostring, table.concat
function lunet.log(level, ...)
    if not LOG_LEVELS[level] then
        local got = type(level) == "string" and string.format("%q", level) or type(level)
        error("lunet.log: the level must be one of " .. LOG_LEVEL_NAMES .. ", got " .. got, 2)
    end
    local n = select("#", ...)
    if n == 1 then return c_log(level, tostring((...))) end
    local parts = { ... }
    for i = 1, n do parts[i] = tostring(parts[i]) end
    return c_log(level, concat(parts, "\t", 1, n))
end

local handlers = {}
-- The TLS context of each listener that serves TLS (lua-api/src/tls.rs).
local listener_tls = {}

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
    -- one, per server name.
    if pool == nil and tls then pool = addr .. "#tls:" .. tostring(tls.server_name or "") end
    pool = tostring(pool or addr) .. (bind and ("@" .. tostring(bind)) or "")
    local pooled = core.pool_take(pool, timeout)
    if pooled then return new_socket(pooled, pool) end
    local id, err = core.connect(addr, timeout, bind)
    if not id then return nil, err end
    if not isyieldable() then
        c_close(id)
        cannot_wait("lunet.connect")
    end
    local ok, cerr = yield(OP_CONNECT, id)
    if ok and tls then
        ok, cerr = core.tls_connect(id, tls, addr)
        if ok then
            local done, herr = c_read(id, READ.HANDSHAKE)
            if done == false then done, herr = yield(OP_READ, id) end
            ok, cerr = done, herr
        end
    end
    if not ok then
        c_close(id)
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

-- Shared dicts: state shared by every VM (no yield: one shard lock).
lunet.shared = { dict = core.shared_dict }

-- Lane calls: blocking work runs on the lane; the session yields meanwhile.
-- Misuse (say, a table as a bind value) comes back marked and raises here.
local MISUSE = "lunet:misuse"
local function lane_result(a, b, c, ...)
    if a == nil and c == MISUSE then error(b, 2) end
    return a, b, c, ...
end

-- sock:setkeepalive([idle_ms [, size]]): back to lunet.connect's pool.
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

-- Wrappers tail-call lane_result so that an error points at their caller.
local function lane(what, ...)
    if not isyieldable() then cannot_wait(what, 4) end
    return yield(OP_LANE, ...)
end

local function check_string(value, what)
    if type(value) ~= "string" then error(what .. " must be a string, got " .. type(value), 3) end
end

local Db = {}
Db.__index = Db
Db.__name = "lunet.db"

function Db:exec(sql, ...)
    permitted("db", "db:exec")
    check_string(sql, "db:exec: sql")
    return lane_result(lane("db:exec", LANE.DB_EXEC, self.path, sql, ...))
end

function Db:query(sql, ...)
    permitted("db", "db:query")
    check_string(sql, "db:query: sql")
    return lane_result(lane("db:query", LANE.DB_QUERY, self.path, sql, ...))
end

function Db:atomic(statements)
    permitted("db", "db:atomic")
    if type(statements) ~= "table" then error("db:atomic: expected a list of {sql, ...} statements", 2) end
    return lane_result(lane("db:atomic", LANE.DB_ATOMIC, self.path, statements))
end

function Db:__tostring()
    return "lunet.db(" .. self.path .. ")"
end

lunet.db = {}

function lunet.db.open(path)
    permitted("db", "lunet.db.open")
    check_string(path, "lunet.db.open: path")
    local ok, err = lane_result(lane("lunet.db.open", LANE.DB_OPEN, path))
    if not ok then return nil, err end
    return setmetatable({ path = path }, Db)
end

lunet.fs = {}

function lunet.fs.read(path)
    permitted("fs", "lunet.fs.read")
    check_string(path, "lunet.fs.read: path")
    return lane_result(lane("lunet.fs.read", LANE.FS_READ, path))
end

function lunet.fs.write(path, data)
    permitted("fs", "lunet.fs.write")
    check_string(path, "lunet.fs.write: path")
    check_string(data, "lunet.fs.write: data")
    return lane_result(lane("lunet.fs.write", LANE.FS_WRITE, path, data))
end

function lunet.resolve(host)
    permitted("net", "lunet.resolve")
    check_string(host, "lunet.resolve: host")
    return lane_result(lane("lunet.resolve", LANE.RESOLVE, host))
end

lunet.lane = {}

function lunet.lane.sleep(ms)
    permitted("lane", "lunet.lane.sleep")
    if type(ms) ~= "number" then error("lunet.lane.sleep: ms must be a number", 2) end
    return lane_result(lane("lunet.lane.sleep", LANE.SLEEP, ms))
end

package.loaded.lunet = lunet
lunet.redis = core.redis(core, lunet)

-- Services (skynet's actor model): each service is its own VM.

local function answer(ok, ...)
    if not ok then error(..., 3) end
    return ...
end

lunet.self = core.self
function lunet.register(name)
    if type(name) ~= "string" then error("lunet.register: expected a name", 2) end
    local ok, err = core.register(name)
    if not ok then error(err, 2) end
    return true
end
lunet.query = core.query
lunet.kill = core.kill
lunet.send = core.send

function lunet.spawn(script, ...)
    permitted("spawn", "lunet.spawn")
    local options
    if type(script) == "table" then
        options = script
        if options.args ~= nil and type(options.args) ~= "table" then
            error("lunet.spawn: args must be a table", 2)
        end
    elseif type(script) == "string" then
        options = { script = script }
    else
        error("lunet.spawn: expected a script path or an options table", 2)
    end
    if not isyieldable() then cannot_wait("lunet.spawn") end
    local handle, token
    if options.args then
        handle, token = core.spawn(options, table.unpack(options.args, 1, options.args.n or #options.args))
    else
        handle, token = core.spawn(options, ...)
    end
    if not handle then error(token, 2) end
    answer(yield(OP_CALL, token))
    return handle
end

function lunet.call(handle, ...)
    if not isyieldable() then cannot_wait("lunet.call") end
    local token, err = core.call(handle, ...)
    if not token then error(err, 2) end
    return answer(yield(OP_CALL, token))
end

-- lunet.call that raises "timeout" after ms; the answer that comes later is
-- dropped (its token no longer matches what the session waits for).
function lunet.call_timeout(ms, handle, ...)
    if type(ms) ~= "number" or not (ms > 0) then
        error("lunet.call_timeout: ms must be a number greater than 0", 2)
    end
    if not isyieldable() then cannot_wait("lunet.call_timeout") end
    local token, err = core.call(handle, ...)
    if not token then error(err, 2) end
    return answer(yield(OP_CALL, token, ms))
end

local dispatch_fn
function lunet.dispatch(fn)
    if type(fn) ~= "function" then error("lunet.dispatch: expected a function", 2) end
    dispatch_fn = fn
    core.set_dispatch()
end

lunet.response = core.response

function lunet.exit()
    core.exit()
    if isyieldable() then yield(OP_EXIT) end
end

function lunet.wait()
    if not isyieldable() then cannot_wait("lunet.wait") end
    return yield(OP_WAIT, co_running())
end

lunet.wakeup = core.wakeup

-- A critical section: sessions that call the returned function run `fn`
-- one at a time, in arrival order (a session may re-enter its own).
function lunet.queue()
    local owner, depth = nil, 0
    local waiting, head, tail = {}, 1, 0
    local function release(ok, ...)
        depth = depth - 1
        if depth == 0 then
            owner = nil
            if head <= tail then
                local next_co = waiting[head]
                waiting[head] = nil
                head = head + 1
                owner = next_co
                lunet.wakeup(next_co)
            end
        end
        if not ok then error(..., 0) end
        return ...
    end
    return function(fn, ...)
        local co = coroutine.running()
        if owner ~= co then
            if owner ~= nil then
                tail = tail + 1
                waiting[tail] = co
                lunet.wait()        -- the releaser made us the owner
            else
                owner = co
            end
        end
        depth = depth + 1
        return release(pcall(fn, ...))
    end
end

-- Coroutines a script creates itself: a lunet call inside one must still
-- reach the scheduler (as OpenResty and skynet.coroutine arrange). The
-- wrapped resume passes lunet's yields up through every user coroutine to
-- the session and feeds the answer back down; the user's own yields reach
-- the user as usual. `switch` tells the monitor which coroutine runs, so
-- that an interrupt lands in it (lua-api/src/interrupt.rs).
local switch = core.switch
local function switched_back(...)
    switch()
    return ...
end

local function resume_down(co, ...)
    lunet_yield = false
    switch(co)
    return switched_back(co_resume(co, ...))
end

local function pass_up(co, ok, ...)
    if ok and lunet_yield and co_status(co) == "suspended" then
        return pass_up(co, resume_down(co, yield(...)))
    end
    return ok, ...
end

local user_coroutine = {}
for name, fn in pairs(coroutine) do user_coroutine[name] = fn end

function user_coroutine.resume(co, ...)
    return pass_up(co, resume_down(co, ...))
end

-- Closing runs the coroutine's pending __close handlers inside it.
if co_close then
    function user_coroutine.close(co)
        switch(co)
        return switched_back(co_close(co))
    end
end

local function wrap_result(co, ok, ...)
    if not ok then
        local message = ...
        if co_close then co_close(co) end
        error(message, 0)
    end
    return ...
end

function user_coroutine.wrap(fn)
    local co = co_create(fn)
    return function(...)
        return wrap_result(co, user_coroutine.resume(co, ...))
    end
end

coroutine = user_coroutine
package.loaded.coroutine = user_coroutine

-- Batteries ------------------------------------------------------------
-- lunet.json, lunet.http and lunet.ws are built on first use (see
-- lua-api/src/batteries.rs): a VM that never uses them does not pay.
-- A battery's read that may wait: `fast(id, arg [, wait_error])` answers
-- false when it parked a read (read.rs: Fill); each false yields OP_READ on
-- connection `id` and calls again with the wait's error, if any.
local function until_read(what, fast, id, arg)
    local a, b, c = fast(id, arg)
    while a == false do
        if not isyieldable() then cannot_wait(what, 4) end
        local _, wait_error = yield(OP_READ, id)
        a, b, c = fast(id, arg, wait_error)
    end
    return a, b, c
end
-- The one place the batteries' TLS clients (https, wss) connect through:
-- https and wss: a TLS connection that verifies `host`'s certificate.
local function tls_connect(address, host, timeout, pool)
    return lunet.connect(address, { timeout = timeout, pool = pool, tls = { server_name = host } })
end
local battery_internals = {
    yield = yield, cannot_wait = cannot_wait, new_socket = new_socket, Socket = Socket,
    until_read = until_read, tls_connect = tls_connect, permitted = permitted,
}
setmetatable(lunet, {
    __index = function(module, name)
        local build = core.battery(name)
        if build == nil then return nil end
        local battery = build(core, lunet, battery_internals)
        rawset(module, name, battery)
        return battery
    end,
})
-- End of batteries -----------------------------------------------------

-- What the scheduler calls to start a connection's handler.
local function run_handler(listener, id)
    local tls = listener_tls[listener]
    if tls then core.tls_accept(id, tls) end
    return handlers[listener](new_socket(id))
end

-- What the scheduler calls for each message (send or call).
local function run_dispatch(source, ...)
    return dispatch_fn(source, ...)
end

return run_handler, run_dispatch
