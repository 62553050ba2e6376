-- Fan-out to subscribers that may read slowly, or never: the shape of a
-- chat room or a pub/sub hub, and the benchmark of the write bound
-- (bench/fanout.sh, tests/write_bound.rs).
--
--   lunet serve server-scripts/fanout.lua listen=127.0.0.1:7003 --hosts 1
--
-- Line protocol:
--   sub           this connection subscribes (nothing more is read from it)
--   pub N SIZE    N messages of SIZE bytes: each is a message to this host,
--                 written to every subscriber by the message's own dispatch
--                 session (as a service that fans out does); answers "sent N"
--   stats         "ok=A overloaded=B closed=C done=D subscribers=S"
--
-- Every write goes straight to the subscriber's socket: past --high-water
-- the writers wait, and those that find the socket's waiting room full (or
-- wait past the write timeout) get "overloaded" and are dropped here. See
-- docs/lua-api.md, "Fan-out", for the pattern with a queue per subscriber.
local lunet = require "lunet"

local subscribers = {}
local counts = { ok = 0, overloaded = 0, closed = 0, done = 0 }
local payloads = {}

-- One payload per size, made once: a message carries only its size.
local function payload(size)
    local text = payloads[size]
    if not text then
        text = string.rep("m", size - 1) .. "\n"
        payloads[size] = text
    end
    return text
end

lunet.dispatch(function(_, size)
    local text = payload(size)
    for sock in pairs(subscribers) do
        local ok, err = sock:write(text)
        if ok then
            counts.ok = counts.ok + 1
        elseif err == "overloaded" then
            counts.overloaded = counts.overloaded + 1
        else
            counts.closed = counts.closed + 1
            subscribers[sock] = nil
        end
    end
    counts.done = counts.done + 1
end)

lunet.listen(lunet.getenv("listen", "127.0.0.1:7003"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local n, size = line:match("^pub (%d+) (%d+)$")
        if line == "sub" then
            subscribers[sock] = true
            sock:write("subscribed\n")
            -- Held open, never read again: the subscriber is as slow as it likes.
            while subscribers[sock] do lunet.sleep(1000) end
            return
        elseif n then
            n, size = tonumber(n), math.max(tonumber(size), 1)
            local me = lunet.self()
            for _ = 1, n do lunet.send(me, size) end
            sock:write("sent ", n, "\n")
        elseif line == "stats" then
            local count = 0
            for _ in pairs(subscribers) do count = count + 1 end
            sock:write(string.format("ok=%d overloaded=%d closed=%d done=%d subscribers=%d\n",
                counts.ok, counts.overloaded, counts.closed, counts.done, count))
        else
            sock:write("error unknown command\n")
        end
    end
end)
