-- A general-purpose service for tests/services.rs: every test spawns it
-- (sandboxed unless a test asks for trusted=true) and drives it with
-- `lunet.call(h, command, ...)` / `lunet.send(h, command, ...)`.
local lunet = require "lunet"

local name = ...                 -- spawn argument, echoed by "whoami"
-- Only "busy" needs the dict: its spawner grants caps = {dicts = {"svc_worker"}}.
local function flags() return lunet.shared.dict("svc_worker") end
local commands = {}

-- Replies handed out by lunet.response(), answered by "release".
local held = {}
-- Messages seen by "note" (a plain send target) and the last error text a
-- send-only command recorded.
local notes, last_error = 0, nil

function commands.echo(...)
    return ...
end

function commands.ping()
    return "pong"
end

function commands.whoami()
    return name, lunet.self()
end

function commands.fail(message)
    error(message)
end

function commands.sleep(ms)
    lunet.sleep(ms)
    return "slept"
end

function commands.exit()
    lunet.exit()
end

-- Yield-free CPU loops for the monitor.
function commands.spin()
    while true do end
end

function commands.pcall_spin()
    while true do
        pcall(function() while true do end end)
    end
end

-- A long computation that ends when the test sets the "release" flag: the
-- service stays inside one slice meanwhile, so its mailbox fills up.
function commands.busy()
    local flags = flags()
    flags:set("busy", true)
    local spins = 0
    while not flags:get("release") do spins = spins + 1 end
    flags:delete("busy")
    return spins
end

function commands.note()
    notes = notes + 1
end

function commands.notes()
    return notes
end

-- Allocates `bytes` as one string and as a table of small strings.
function commands.alloc(bytes)
    local big = string.rep("x", bytes)
    local parts = {}
    for i = 1, bytes // 64 do parts[i] = tostring(i) .. string.rep("y", 48) end
    return #big + #parts
end

-- Delayed answers: "hold" keeps the reply function, "release" answers every
-- held call (last one first) with "released <i>".
function commands.hold(i)
    held[#held + 1] = { i = i, reply = lunet.response() }
end

function commands.release()
    local count = #held
    local twice = true
    for k = count, 1, -1 do
        local entry = held[k]
        local first = entry.reply("released", entry.i)
        local second = entry.reply("again", entry.i)
        twice = twice and first == true and second == false
        held[k] = nil
    end
    return count, twice
end

-- A reply whose values the codec refuses: the caller gets an error.
function commands.bad_reply()
    local reply = lunet.response()
    reply(function() end)
end

function commands.bad_return()
    return coroutine.create(function() end)
end

-- lunet.response() in a session that answers no call (a send) raises.
function commands.response_in_send()
    local ok, err = pcall(lunet.response)
    last_error = ok and "no error" or tostring(err)
end

function commands.last_error()
    return last_error
end

-- Sends `count` messages ("seq", tag, i) to `target`; every `every`-th one
-- is preceded by a call that asks what the target has seen of `tag`, which
-- must be i - 1 since messages from one service arrive in order. Returns
-- the number of mismatching answers.
function commands.flood(target, tag, count, every)
    local mismatches = 0
    for i = 1, count do
        if every and i % every == 0 then
            local seen = lunet.call(target, "seen", tag)
            if seen ~= i - 1 then mismatches = mismatches + 1 end
        end
        local ok, err = lunet.send(target, "seq", tag, i)
        if not ok then error("send failed: " .. tostring(err)) end
    end
    return mismatches
end

-- Sends `count` "add" messages to `target`, then one call so that the
-- answer comes after every add was handled.
function commands.adds(target, count)
    for _ = 1, count do lunet.send(target, "add") end
    return lunet.call(target, "count")
end

-- What the environment offers (the sandbox test).
function commands.environment(bytecode)
    local report = {}
    report.os_execute = type(os.execute)
    report.os_exit = type(os.exit)
    report.os_getenv = type(os.getenv)
    report.os_remove = type(os.remove)
    report.os_time = type(os.time)
    report.io = type(io)
    report.debug = type(debug)
    report.string_dump = type(string.dump)
    report.dofile = type(dofile)
    report.loadfile = type(loadfile)
    local ok, chunk_or_err = pcall(load, bytecode)
    if ok and type(chunk_or_err) == "function" then
        report.load_binary = "ran:" .. tostring(chunk_or_err())
    else
        report.load_binary = "refused:" .. tostring(ok and "nil chunk" or chunk_or_err)
    end
    local ok_b, err_b = pcall(load, bytecode, "bin", "b")
    report.load_mode_b = ok_b and "accepted" or ("raised:" .. tostring(err_b))
    report.load_text = tostring(load("return 6 * 7")())
    local ok_io, io_or_err = pcall(require, "io")
    report.require_io = ok_io and type(io_or_err) or ("raised:" .. tostring(io_or_err))
    report.require_lunet = type(require("lunet"))
    report.string_metatable = type(getmetatable(""))
    report.string_method = ("abc"):upper()
    return report
end

lunet.dispatch(function(source, command, ...)
    local handler = commands[command]
    if not handler then error("svc_worker: no command " .. tostring(command)) end
    return handler(...)
end)
