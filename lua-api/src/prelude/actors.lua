-- lunet.register, lunet.spawn, lunet.call, lunet.call_timeout, lunet.exit,
-- lunet.wait and lunet.queue (part of prelude.lua, loaded on first use of
-- one): skynet's actor model, each service its own VM. lunet.send,
-- lunet.self, lunet.query, lunet.kill, lunet.response and lunet.wakeup
-- are Rust functions of `core` under the same names.

local core, lunet, internals = ...
local yield, cannot_wait, isyieldable, permitted, co_running =
    internals.yield, internals.cannot_wait, internals.isyieldable, internals.permitted, internals.co_running
local error, type, pcall = error, type, pcall
local OP = core.OP
local OP_CALL, OP_WAIT, OP_EXIT = OP.CALL, OP.WAIT, OP.EXIT
local c_call = core.call

local function answer(ok, ...)
    if not ok then error(..., 3) end
    return ...
end
internals.answer = answer -- for the runtime model (prelude/model.lua)

function lunet.register(name)
    if type(name) ~= "string" then error("lunet.register: expected a name", 2) end
    local ok, err = core.register(name)
    if not ok then error(err, 2) end
    return true
end

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
    local token, err = c_call(handle, ...)
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
    local token, err = c_call(handle, ...)
    if not token then error(err, 2) end
    return answer(yield(OP_CALL, token, ms))
end

function lunet.exit()
    core.exit()
    if isyieldable() then yield(OP_EXIT) end
end

function lunet.wait()
    if not isyieldable() then cannot_wait("lunet.wait") end
    return yield(OP_WAIT, co_running())
end

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
