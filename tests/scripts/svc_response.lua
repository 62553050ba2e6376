-- lunet run: delayed answers with lunet.response(). Prints key=value lines
-- for tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local worker = lunet.spawn("svc_worker.lua", "w")
local main = coroutine.running()

-- Three calls held by the worker, answered later by a fourth.
local answers, pending = {}, 3
for i = 1, 3 do
    lunet.fork(function()
        answers[i] = table.concat({ lunet.call(worker, "hold", i) }, " ")
        pending = pending - 1
        if pending == 0 then lunet.wakeup(main) end
    end)
end
lunet.sleep(20)
show("held_before_release", answers[1], answers[2], answers[3])
show("release", lunet.call(worker, "release"))
if pending > 0 then lunet.wait() end    -- the answers may already be here
show("answers", answers[1], answers[2], answers[3])

-- A reply the codec refuses, and a return value the codec refuses.
show("bad_reply", pcall(lunet.call, worker, "bad_reply"))
show("bad_return", pcall(lunet.call, worker, "bad_return"))

-- lunet.response() outside a call.
lunet.send(worker, "response_in_send")
show("response_in_send", lunet.call(worker, "last_error"))
show("response_in_main", pcall(lunet.response))

-- The worker is still well.
show("ping", lunet.call(worker, "ping"))
