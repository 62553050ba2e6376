-- lunet run: spawn{mailbox=N}: while the target is inside a long slice its
-- mailbox fills, and send returns nil, "overloaded" past N queued messages
-- (call raises). An unbounded mailbox past 1,024 messages is logged.
-- Prints key=value lines for tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local flags = lunet.shared.dict("svc_worker")

-- Makes `handle` busy (one slice that runs until flags "release" is set)
-- and returns once it is.
local function hold(handle)
    flags:delete("release")
    lunet.send(handle, "busy")
    while not flags:get("busy") do lunet.sleep(1) end
end

local capped = lunet.spawn {
    script = "svc_worker.lua", mailbox = 4, args = { "capped" }, caps = { dicts = { "svc_worker" } },
}
hold(capped)
local results = {}
for i = 1, 10 do
    local ok, err = lunet.send(capped, "note")
    results[i] = ok and "ok" or tostring(err)
end
show("sends", table.concat(results, " "))
show("call_overloaded", pcall(lunet.call, capped, "ping"))
flags:set("release", true)
-- The four queued notes are handled first; until then a call may still be
-- refused.
local ok, notes
for _ = 1, 1000 do
    ok, notes = pcall(lunet.call, capped, "notes")
    if ok or not tostring(notes):find("overloaded", 1, true) then break end
    lunet.sleep(1)
end
show("notes_after_release", ok, notes)
show("send_after_release", lunet.send(capped, "note"))

-- No cap: a long mailbox is logged, nothing is refused.
local unbounded = lunet.spawn {
    script = "svc_worker.lua", args = { "unbounded" }, caps = { dicts = { "svc_worker" } },
}
hold(unbounded)
local refused = 0
for _ = 1, 1500 do
    if not lunet.send(unbounded, "note") then refused = refused + 1 end
end
flags:set("release", true)
show("unbounded_refused", refused)
show("unbounded_notes", lunet.call(unbounded, "notes"))
