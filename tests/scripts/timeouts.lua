-- lunet run: lunet.call_timeout and the timers of lunet.timeout. Prints
-- key=value lines for tests/timeouts.rs. The script ends by returning from
-- its main chunk (no lunet.exit): the run exits only once no session is
-- left, so a cancelled timer that kept its session waiting for its full
-- hour would keep it running.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local callee = lunet.spawn{ script = "timeouts_callee.lua", caps = { lane = true } }

-- In time: the answer's values come back.
show("in_time", lunet.call_timeout(5000, callee, "echo", 1, "two", nil, true))

-- A callee parked in lunet.wait(): the caller raises "timeout".
show("stuck_in_wait", pcall(lunet.call_timeout, 50, callee, "wait"))

-- A callee held in a long lane call.
show("stuck_in_lane", pcall(lunet.call_timeout, 50, callee, "lane", 1000))

-- The late answers: the parked session answers "late answer" once woken,
-- and the lane call ends later. Neither may wake this session's later
-- calls, whose token differ: each gets its own answer.
show("woken", lunet.call(callee, "wake"))
show("after_late", lunet.call_timeout(5000, callee, "echo", "mine"))
lunet.sleep(1100) -- the lane's late answer arrives meanwhile, and is dropped
show("after_late_lane", lunet.call(callee, "echo", "mine again"))

-- A second caller session times out while this one gets its answer.
local other
lunet.fork(function()
    other = table.pack(pcall(lunet.call_timeout, 30, callee, "wait"))
end)
show("concurrent", lunet.call_timeout(5000, callee, "echo", "concurrent answer"))
while not other do lunet.sleep(5) end
show("concurrent_timeout", table.unpack(other, 1, other.n))
lunet.call(callee, "wake")

-- Misuse and dead targets raise at once.
show("bad_ms", pcall(lunet.call_timeout, 0, callee, "echo"))
show("nan_ms", pcall(lunet.call_timeout, 0 / 0, callee, "echo"))
show("dead", pcall(lunet.call_timeout, 100, 999999, "echo"))
show("not_yieldable", pcall(table.sort, { 1, 2 }, function()
    return lunet.call_timeout(100, callee, "echo")
end))

-- Timers.
local fired = {}
local function record(...) fired[#fired + 1] = table.concat({ ... }, "+") end
local first = lunet.timeout(40, record, "first", "arg")
local second = lunet.timeout(20, record, "second")
local cancelled = lunet.timeout(30, record, "cancelled")
show("timer_type", type(first), tostring(first):match("^lunet%.timer") ~= nil)
show("cancel", cancelled:cancel(), cancelled:cancel())
lunet.sleep(100)
show("fired", table.concat(fired, ","))
show("cancel_after_fire", first:cancel())

-- Cancelled before its session ever ran (same slice).
local early = lunet.timeout(0, record, "early")
show("cancel_early", early:cancel())
lunet.sleep(10)
show("fired_after_early", table.concat(fired, ","))

-- A timer that cancels itself from inside its function: it has fired.
local self_timer
self_timer = lunet.timeout(1, function() show("self_cancel", self_timer:cancel()) end)
lunet.sleep(20)

-- Zero and NaN delays run on the next turn, as before.
lunet.timeout(0 / 0, record, "nan")
lunet.timeout(-5, record, "negative")
lunet.sleep(10)
show("fired_soon", table.concat(fired, ","))

-- Many long timers, all cancelled: none may keep the run alive.
local timers = {}
for i = 1, 2000 do timers[i] = lunet.timeout(3600 * 1000, record, "never") end
local all = true
for i = 1, 2000 do all = timers[i]:cancel() and all end
show("cancelled_all", all)
local hour = lunet.timeout(3600 * 1000, record, "never")
lunet.timeout(5, function() show("cancelled_by_another_session", hour:cancel()) end)
lunet.sleep(20)
show("fired_at_end", table.concat(fired, ","))

lunet.kill(callee)
show("done", true)
