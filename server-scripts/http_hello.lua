-- server-scripts/http_hello.lua: HTTP/1.1 "hello world" on lunet.http.
--
--   lunet serve server-scripts/http_hello.lua listen=127.0.0.1:8080
--   lunet serve server-scripts/http_hello.lua listen=127.0.0.1:8443 tls_cert=CERT tls_key=KEY
--
-- Answers `hello world` (text/plain) to any method and path. lunet.http
-- parses the request and writes the response head in Rust: keep-alive
-- (75 s idle), pipelining, `Expect: 100-continue`, bodies the handler does
-- not read are dropped, malformed requests get their 4xx/5xx and a close.
-- With tls_cert and tls_key (PEM files: the certificate chain and its key)
-- it serves HTTPS. It is benchmarked with wrk against nginx + lua
-- (bench/run.sh http, and https with TLS).
-- server-scripts/http_hello_lua.lua is the same server written on the
-- socket API in plain Lua.

local lunet = require "lunet"

local tls_cert, tls_key = lunet.getenv("tls_cert"), lunet.getenv("tls_key")
if (tls_cert == nil) ~= (tls_key == nil) then
    error("http_hello.lua: tls_cert and tls_key go together", 0)
end
local tls = tls_cert and { cert = tls_cert, key = tls_key }

lunet.http.listen(lunet.getenv("listen", "127.0.0.1:8080"), { tls = tls }, function(req, res)
    res:send("hello world")
end)
