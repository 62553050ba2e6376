-- server-scripts/http_hello.lua: HTTP/1.1 "hello world" on lunet.http.
--
--   lunet serve server-scripts/http_hello.lua listen=127.0.0.1:8080
--
-- Answers `hello world` (text/plain) to any method and path. lunet.http
-- parses the request and writes the response head in Rust: keep-alive
-- (75 s idle), pipelining, `Expect: 100-continue`, bodies the handler does
-- not read are dropped, malformed requests get their 4xx/5xx and a close.
-- It is benchmarked with wrk against nginx + lua (bench/run.sh http).
-- server-scripts/http_hello_lua.lua is the same server written on the
-- socket API in plain Lua.

local lunet = require "lunet"

lunet.http.listen(lunet.getenv("listen", "127.0.0.1:8080"), function(req, res)
    res:send("hello world")
end)
