-- tests/https.rs: lunet.http over TLS.
--   GET  /hello   "hello over https"
--   POST /echo    the body back, its length in X-Length
--   other paths   404 (the router)
--
--   lunet serve tests/scripts/https_server.lua listen=127.0.0.1:0 cert=FILE key=FILE [handshake_timeout=MS]
local lunet = require "lunet"

local tls = { cert = lunet.getenv("cert"), key = lunet.getenv("key") }
tls.handshake_timeout = tonumber(lunet.getenv("handshake_timeout", ""))

local r = lunet.http.router()

r:get("/hello", function(req, res)
    res:send("hello over https")
end)

r:post("/echo", function(req, res)
    local body = req:body()
    if not body then return end           -- lunet answered already
    res:header("X-Length", #body)
    res:send(body)
end)

lunet.http.listen(lunet.getenv("listen"), { tls = tls }, r)
