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
local type, tostring, error, floor = type, tostring, error, math.floor

local interval = core.interval_ns
local target = core.target
local timeout_ms = core.timeout_ms

-- Open loop: the next intended send time (ns) of each connection session.
local schedules = setmetatable({}, { __mode = "k" })
local handler

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
    fail(tostring(kind), message and tostring(message) or nil)
end

--- Times one request: calls fn(...) and returns what it returned (up to
--- three values). A result of nil or false counts an error whose kind comes
--- from the second value ("timeout", "closed", ... or anything else:
--- protocol); otherwise the latency is recorded.
function load.request(fn, ...)
    local intended
    if interval > 0 then
        local schedule = schedules[running_coroutine()]
        if schedule then
            intended = schedule[1]
            schedule[1] = intended + interval
            local wait = (intended - clock()) / 1e6
            if wait >= 1 then sleep(floor(wait)) end
        end
    end
    local sent = clock()
    local a, b, c = fn(...)
    if a == nil or a == false then
        local word = b == nil and "protocol" or tostring(b)
        fail(word, word)
        return a, b, c
    end
    done(intended or sent, sent)
    return a, b, c
end

local function connection(index)
    local schedule
    while running() do
        local wait = core.connect_wait()
        if wait > 0 then sleep(wait) end
        if not running() then return end
        local sock, err = connect(target, timeout_ms)
        if not sock then
            fail("connect", "connect " .. target .. ": " .. tostring(err))
            sleep(100)
        else
            core.up(1)
            sock:settimeout(timeout_ms)
            if interval > 0 and not schedule then
                schedule = { clock() + floor(interval * (index - 1) / core.total) }
                schedules[running_coroutine()] = schedule
            end
            local ok, failure = xpcall(handler, traceback, sock, index)
            core.up(-1)
            sock:close()
            if not ok then
                core.script_error(tostring(failure))
                return
            end
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
