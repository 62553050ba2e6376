-- tests/websocket.rs: a WebSocket echo server on lunet.http (`listen=`).
--   /echo         echoes every message with its kind; "close" ends it
--   /small        the same with max_frame = 100, max_message = 200
--   /close-first  sends "bye" and closes with 4000 "done"
--   /proto        answers the subprotocol "chat"
--   other paths   a plain HTTP answer
-- With cert= and key= it serves TLS (wss://, tests/https.rs).
local lunet = require "lunet"

local function echo(ws)
    while true do
        local data, kind, code = ws:recv()
        if not data then
            lunet.log("info", "ws ended: " .. kind)
            return
        end
        if kind == "close" then
            lunet.log("info", "ws close " .. tostring(code) .. " " .. data)
            return
        end
        if data == "server-close" then
            return ws:close(1000, "asked")
        end
        assert(ws:send(data, kind))
    end
end

local cert, key = lunet.getenv("cert"), lunet.getenv("key")
local options = cert and { tls = { cert = cert, key = key } } or {}

lunet.http.listen(lunet.getenv("listen"), options, function(req, res)
    if req.path == "/echo" or req.path == "/small" or req.path == "/proto" then
        local options
        if req.path == "/small" then options = { max_frame = 100, max_message = 200 } end
        if req.path == "/proto" then options = { protocol = "chat" } end
        local ws, err = lunet.ws.upgrade(req, res, options)
        if not ws then
            lunet.log("info", "upgrade refused: " .. err)
            return
        end
        return echo(ws)
    elseif req.path == "/close-first" then
        local ws = assert(lunet.ws.upgrade(req, res))
        ws:send("bye")
        ws:close(4000, "done")
        return
    end
    res:send("plain http")
end)
