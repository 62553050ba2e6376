-- Coroutines a script creates itself may call lunet: the waits pass up to the
-- scheduler, the script's own yields stay the script's. Prints key=value lines.
local lunet = require "lunet"

local bound = lunet.listen("127.0.0.1:0", function(sock)
    -- a generator that reads lines from the socket and yields them upward
    local lines = coroutine.wrap(function()
        while true do
            local line = sock:readline()
            if not line then return end
            coroutine.yield(line:upper())
        end
    end)
    for line in lines do sock:write(line, "\n") end
end)

local client = assert(lunet.connect(bound))
client:write("a\n")
local first = client:readline()
lunet.sleep(5)             -- the next line arrives while the generator waits
client:write("b\n")
print("generator=" .. first .. "," .. client:readline())
client:close()

local co = coroutine.create(function(x)
    lunet.sleep(5)
    local inner = coroutine.create(function()
        lunet.sleep(5)
        coroutine.yield("inner")
        return "done"
    end)
    local _, got = coroutine.resume(inner)
    local y = coroutine.yield(x + 1, got)
    local _, last = coroutine.resume(inner)
    return y * 2, last
end)
local ok1, a, b = coroutine.resume(co, 1)
local ok2, c, d = coroutine.resume(co, 21)
print(string.format("nested=%s,%s,%s,%s,%s,%s", tostring(ok1), a, b, tostring(ok2), c, d))

local waiter
local waiting = coroutine.create(function()
    waiter = coroutine.running()
    lunet.wait()
    return "woken"
end)
lunet.fork(function()
    lunet.sleep(5)
    print("wakeup=" .. tostring(lunet.wakeup(waiter)))
end)
local okw, woken = coroutine.resume(waiting)
print("wait=" .. tostring(okw) .. "," .. tostring(woken))

local ok, err = pcall(coroutine.wrap(function() lunet.sleep(1); error("boom", 0) end))
print("wrap_error=" .. tostring(ok) .. "," .. tostring(err))

-- A bare yield in a session (not in a coroutine of the script's) is an
-- error that stops that session only.
lunet.fork(function() coroutine.yield("not lunet") end)
lunet.sleep(5)
print("after_bare=alive")
lunet.exit()
