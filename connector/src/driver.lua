-- The `load` module of a `lunet load --script` client (see script.rs).
--
--   local lunet = require "lunet"
--   local load = require "load"
--   load.run(function(sock, index)
--       while load.running() do
--           local ok, err = load.request(function()
--               sock:write("PING\n")
--               return sock:readline()
--           end)
--           if not ok then return end   -- counted; the connector reconnects
--       end
--   end)

local core = ...
local lunet = require "lunet"

local clock, done, fail, running = core.clock, core.done, core.fail, core.running
local connect, sleep, fork = lunet.connect, lunet.sleep, lunet.fork
local running_coroutine = coroutine.running
-- The sandbox has no `debug` library: the message alone names file and line.
local traceback = debug and debug.traceback or function(message) return message end
local type, tostring, error, floor, select = type, tostring, error, math.floor, select
local setmetatable, byte, sub = setmetatable, string.byte, string.sub

local interval = core.interval_ns
local target = core.target
local timeout_ms = core.timeout_ms
local sources = core.sources

-- What the handlers' sockets moved since the last report to the recorder
-- (sent with the next result: no extra call per read or write).
local received, sent_bytes = 0, 0

local function take_transfer()
    local bytes_in, bytes_out = received, sent_bytes
    received, sent_bytes = 0, 0
    return bytes_in, bytes_out
end

-- The state of each connection session, by its coroutine: the open loop's
-- next intended send time (ns), and whether a request completed since it
-- connected (then a lost connection reconnects without back-off).
local connections = setmetatable({}, { __mode = "k" })
local handler

-- A handler's socket: the lunet socket's methods, counting the bytes they
-- move. `sock.socket` is the lunet socket itself.
local Counted = {}
Counted.__index = Counted
Counted.__name = "load.socket"

function Counted.__tostring(self)
    return tostring(self.socket)
end

local function counted(socket)
    return setmetatable({ socket = socket }, Counted)
end

-- A failed read counts the partial data it returns.
local function count_failure(err, partial)
    if partial then received = received + #partial end
    return nil, err, partial
end

-- Read as `readuntil("\n")`, so that the count includes a "\r" that
-- readline would have removed; the line comes back as readline gives it.
function Counted:readline(max)
    local line, err, partial = self.socket:readuntil("\n", max)
    if not line then return count_failure(err, partial) end
    received = received + #line + 1
    if byte(line, -1) == 13 then line = sub(line, 1, -2) end
    return line
end

-- A read method that returns exactly what it took from the socket.
local function counted_read(name)
    return function(self, ...)
        local socket = self.socket
        local data, err, partial = socket[name](socket, ...)
        if not data then return count_failure(err, partial) end
        received = received + #data
        return data
    end
end

Counted.readn = counted_read("readn")
Counted.readsome = counted_read("readsome")

-- The delimiter is consumed, not returned.
function Counted:readuntil(delim, max)
    local data, err, partial = self.socket:readuntil(delim, max)
    if not data then return count_failure(err, partial) end
    received = received + #data + #delim
    return data
end

function Counted:write(...)
    local ok, err = self.socket:write(...)
    if ok then
        for i = 1, select("#", ...) do
            local piece = select(i, ...)
            sent_bytes = sent_bytes + #(type(piece) == "string" and piece or tostring(piece))
        end
    end
    return ok, err
end

function Counted:close() return self.socket:close() end
function Counted:peer() return self.socket:peer() end
function Counted:settimeout(ms) return self.socket:settimeout(ms) end

local load = {}

--- The server address, "IP:PORT".
function load.target() return target end

--- All connections of the run (-c), and this service's number (1..-t).
function load.connections() return core.total end
function load.thread() return core.thread end

--- False once the run is over: handlers loop `while load.running() do`.
load.running = running

--- Counts an error of `kind` ("connect", "read", "write", "timeout",
--- "closed", "protocol", or a socket error word such as "reset").
function load.error(kind, message)
    fail(tostring(kind), message and tostring(message) or nil, take_transfer())
end

--- Times one request: calls fn(...) and returns what it returned (up to
--- three values). A result of nil or false counts an error whose kind comes
--- from the second value ("timeout", "closed", ... or anything else:
--- protocol); otherwise the latency is recorded. An error raised by fn goes
--- up to the handler (and is counted as a script error there).
function load.request(fn, ...)
    local intended
    local state = connections[running_coroutine()]
    if interval > 0 and state then
        intended = state.next_send
        state.next_send = intended + interval
        local wait = (intended - clock()) / 1e6
        if wait >= 1 then sleep(floor(wait)) end
    end
    local sent = clock()
    local a, b, c = fn(...)
    if a == nil or a == false then
        local word = b == nil and "protocol" or tostring(b)
        fail(word, word, take_transfer())
        return a, b, c
    end
    if state then state.answered = true end
    -- An HTTP response (load.http.read's) counts its status.
    local status = type(a) == "table" and math.type(a.status) == "integer" and a.status or nil
    local bytes_in, bytes_out = take_transfer()
    done(intended or sent, sent, bytes_in, bytes_out, status)
    return a, b, c
end

--- load.http: requests built and responses parsed in Rust (script_http.rs).
local http = {}
load.http = http

local http_default, http_build, http_method = core.http_default, core.http_build, core.http_method
local read_response = lunet.http.read_response

--- load.http.request([{method=, path=, headers=, body=}]) -> the request
--- as a string. Without options: the http profile's request (--method,
--- --path, --header, --body); unset options default to those.
function http.request(options)
    if options == nil then return http_default end
    if type(options) ~= "table" then error("load.http.request: options must be a table", 2) end
    local request, err = http_build(options)
    if not request then error(err, 2) end
    return request
end

--- load.http.read(sock [, method]) -> res {status, reason, headers, body},
--- keepalive | nil, err. Yields. The response's bytes are counted.
function http.read(sock, method)
    local socket = getmetatable(sock) == Counted and sock.socket or sock
    local res, keep, bytes = read_response(socket, { method = method or http_method })
    if res then received = received + bytes end
    return res, keep
end

local function connection(index)
    -- lunet.connect's options: the timeout, and the --source address to
    -- bind, used in turn over the run's connections as the profiles do.
    local options = { timeout = timeout_ms }
    if #sources > 0 then options.bind = sources[(index - 1) % #sources + 1] end
    local state = { answered = false }
    connections[running_coroutine()] = state
    -- Failures in a row (a connection lost before a request completed).
    local failures = 0
    local attempted = false
    while running() do
        local wait = core.connect_wait()
        if wait > 0 then sleep(wait) end
        if not running() then return end
        if attempted then core.reconnecting() end
        attempted = true
        state.answered = false
        local sock, err = connect(target, options)
        if not sock then
            fail("connect", "connect " .. target .. ": " .. tostring(err), take_transfer())
        else
            core.up(1)
            sock:settimeout(timeout_ms)
            if interval > 0 and not state.next_send then
                state.next_send = clock() + floor(interval * (index - 1) / core.total)
            end
            local ok, failure = xpcall(handler, traceback, counted(sock), index)
            core.up(-1)
            sock:close()
            core.transfer(take_transfer())
            if not ok then core.script_error(tostring(failure)) end
        end
        if state.answered then
            failures = 0
        elseif running() then
            failures = failures + 1
            sleep(core.backoff_ms(failures))
        end
    end
end

--- Starts this service's connections, each running handler(sock, index)
--- (index counts from 1 over the whole run). Call it once, at the top level.
function load.run(fn)
    if type(fn) ~= "function" then error("load.run: expects a function(sock, index)", 2) end
    if handler then error("load.run: called twice", 2) end
    handler = fn
    for i = 0, core.count - 1 do
        fork(connection, core.first + i)
    end
    core.started()
end

return load
