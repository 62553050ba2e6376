-- tests/http_client.rs: lunet.http.request against the test's raw server
-- at `raw=` (IP:PORT) and against a lunet.http server in this same VM.
-- Prints key=value lines, then exits.
local lunet = require "lunet"
local http = lunet.http
local raw = "http://" .. assert(lunet.getenv("raw"))

local function say(key, ...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    print(key .. "=" .. table.concat(parts, " ", 1, parts.n))
end

local function get(path, options)
    options = options or {}
    options.url = options.url or (raw .. path)
    options.timeout = options.timeout or 2000
    return http.request(options)
end

-- A lunet.http server in this VM, on a free port.
local bound = http.listen("127.0.0.1:0", function(req, res)
    if req.path == "/json" then
        return res:json({ got = req:body(), method = req.method, header = req.headers["x-test"] })
    end
    res:header("X-Path", req.path)
    res:send("lunet " .. req.method)
end)
local lunet_url = "http://" .. bound

local res = assert(http.request({ url = lunet_url .. "/a", method = "GET" }))
say("lunet_get", res.status, res.body, res.headers["x-path"], res.headers["content-type"])
res = assert(http.request({
    url = lunet_url .. "/json", method = "post", body = "payload",
    headers = { ["X-Test"] = "yes" },
}))
local decoded = lunet.json.decode(res.body)
say("lunet_post", res.status, decoded.got, decoded.method, decoded.header, res.headers["content-type"])

-- Raw server: framings and keep-alive.
res = assert(get("/chunked"))
say("chunked", res.status, res.body)
res = assert(get("/close-delimited"))
say("close_delimited", res.status, res.body)
res = assert(get("/interim"))
say("interim", res.status, res.body)
res = assert(get("/head", { method = "HEAD" }))
say("head", res.status, #res.body, res.headers["content-length"])
res = assert(get("/cookies"))
say("cookies", type(res.headers["set-cookie"]), table.concat(res.headers["set-cookie"], ","))
local first = assert(get("/who")).body
local second = assert(get("/who")).body
say("keepalive_reused", first == second, first)
res = assert(get("/echo?q=1", {
    method = "PUT", body = "abc",
    headers = { ["X-Many"] = { "one", "two" }, Accept = "text/plain" },
}))
say("echo", res.body)

-- Redirects: not followed unless asked.
res = assert(get("/redirect"))
say("redirect_not_followed", res.status, res.headers.location)
res = assert(get("/redirect", { redirects = 3 }))
say("redirect_followed", res.status, res.body)
res = assert(get("/redirect-loop", { redirects = 2 }))
say("redirect_bounded", res.status)
res = assert(get("/see-other", { method = "POST", body = "x", redirects = 1 }))
say("see_other", res.status, res.body)

-- Failures: nil, err.
say("die_mid_body", get("/die-mid-body"))
say("die_before", get("/die-before"))
say("garbage", get("/garbage"))
say("bad_chunk", get("/bad-chunk"))
say("too_big", get("/big", { max_body = 100 }))
say("slow", get("/slow", { timeout = 200 }))
say("refused", http.request({ url = "http://127.0.0.1:" .. lunet.getenv("closed"), timeout = 1000 }))
say("https", http.request({ url = "https://127.0.0.1:1/" }))
say("bad_url", http.request({ url = "ftp://x/" }))
say("no_host", http.request({ url = "nonsense" }))
say("name", http.request({ url = "http://no.such.host.invalid/", timeout = 2000 }))
local ok, err = pcall(http.request, { url = raw .. "/", headers = { ["X-Bad"] = "a\r\nb" } })
say("bad_header", ok, err)
ok, err = pcall(http.request, { url = raw .. "/", headers = { ["Content-Length"] = "1" } })
say("framing_header", ok, err)
ok, err = pcall(http.request, "http://x/")
say("not_a_table", ok, err)
-- A pooled connection the server closes when the next request comes: an
-- idempotent request is sent again on a new connection; a POST is not.
local first_once = assert(get("/once")).body
local again = assert(get("/once"))
say("retried", again.status == 200, again.body ~= first_once)
say("not_retried", get("/once", { method = "POST", body = "x" }))
-- The server survived all that.
res = assert(get("/who"))
say("after", res.status)
lunet.exit()
