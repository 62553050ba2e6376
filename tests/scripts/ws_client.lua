-- tests/websocket.rs: lunet.ws.connect against this VM's own server and
-- against the test's raw servers at `raw=` (bad answers). Prints
-- key=value lines, then exits.
local lunet = require "lunet"

local function say(key, ...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    print(key .. "=" .. table.concat(parts, " ", 1, parts.n))
end

local bound = lunet.http.listen("127.0.0.1:0", function(req, res)
    local ws = assert(lunet.ws.upgrade(req, res))
    while true do
        local data, kind = ws:recv()
        if not data or kind == "close" then return end
        ws:send(kind .. ":" .. #data, "text")
    end
end)

local ws = assert(lunet.ws.connect("ws://" .. bound .. "/x", { timeout = 2000 }))
ws:send("hello")
say("text", ws:recv())
ws:send(string.rep("b", 70000), "binary")
say("binary", ws:recv())
say("close", ws:close(1000, "bye"))
say("after_close", ws:send("x"))

local raw = assert(lunet.getenv("raw"))
for _, path in ipairs({ "/not-101", "/bad-accept", "/masked", "/garbage" }) do
    local conn, err = lunet.ws.connect("ws://" .. raw .. path, { timeout = 2000 })
    if conn then
        say(path, conn:recv())
    else
        say(path, nil, err)
    end
end
say("wss", lunet.ws.connect("wss://127.0.0.1:1/"))
say("bad_url", lunet.ws.connect("http://127.0.0.1:1/"))
say("refused", lunet.ws.connect("ws://127.0.0.1:" .. lunet.getenv("closed") .. "/"))
lunet.exit()
