-- bench/cluster.sh: the calling node. Prints key=value lines.
--   mode=calls count=N concurrency=C  lunet.call(ref, 1) N times, C at once
--   mode=sends count=N                N lunet.send(ref, "sent"), then a call
--                                     that answers once all have arrived
--   mode=death victim=PID             a call pending on the node of
--                                     `target=`, which this script kill
--                                     -9s: how long until the call raises
--                                     and until cluster.nodedown fires
local lunet = require "lunet"
local mode = lunet.getenv("mode", "calls")
local count = tonumber(lunet.getenv("count", "100000"))
local concurrency = tonumber(lunet.getenv("concurrency", "1"))

local target = lunet.getenv("target", "echo")
local echo
for _ = 1, 500 do
    echo = lunet.cluster.query(target)
    if echo then break end
    lunet.sleep(10)
end
assert(echo, "no node serves '" .. target .. "'")

if mode == "calls" then
    for _ = 1, 1000 do lunet.call(echo, 1) end -- warm up
    local done, started = 0, lunet.now()
    local finished = 0
    local me = coroutine.running()
    for _ = 1, concurrency do
        lunet.fork(function()
            while done < count do
                done = done + 1
                assert(lunet.call(echo, 1) == 1)
            end
            finished = finished + 1
            if finished == concurrency then lunet.wakeup(me) end
        end)
    end
    lunet.wait()
    local seconds = (lunet.now() - started) / 1000
    print(string.format("calls_per_s=%.0f", count / seconds))
elseif mode == "sends" then
    local started = lunet.now()
    for _ = 1, count do
        while not lunet.send(echo, "sent") do lunet.sleep(1) end
    end
    local arrived = lunet.call(echo, "count")
    local seconds = (lunet.now() - started) / 1000
    assert(arrived == count, "sent " .. count .. ", arrived " .. tostring(arrived))
    print(string.format("sends_per_s=%.0f", count / seconds))
elseif mode == "death" then
    -- The victim's heartbeats are heard first: nodedown is for nodes that
    -- were up.
    local heard
    repeat
        for _, name in ipairs(lunet.cluster.nodes()) do heard = heard or name == echo.node end
        if not heard then lunet.sleep(10) end
    until heard
    local killed, down
    lunet.attach("cluster.nodedown", function(node)
        down = down or lunet.now()
    end)
    lunet.fork(function()
        lunet.sleep(100) -- the call below is pending by then
        killed = lunet.now()
        os.execute("kill -9 " .. lunet.getenv("victim"))
    end)
    local ok, err = pcall(lunet.call, echo, "sleep", 60000)
    local failed = lunet.now()
    assert(not ok and err:find("is down"), tostring(err))
    while not down do lunet.sleep(5) end
    print(string.format("call_failed_ms=%d", failed - killed))
    print(string.format("nodedown_ms=%d", down - killed))
end
lunet.exit()
