-- tests/http_server.rs: lunet.http.listen, req, res and the router.
-- Two listeners on `listen=`: the first with the defaults, the second with
-- small limits and timeouts (the tests of bounds use it).
local lunet = require "lunet"
local http, json = lunet.http, lunet.json

local r = http.router()

r:get("/hello", function(req, res)
    res:send("hello")
end)

-- What the handler saw, one sorted "key=value" line each (lists joined
-- with ",").
local function lines(prefix, t, out)
    for k, v in pairs(t) do
        if type(v) == "table" then v = table.concat(v, ",") end
        out[#out + 1] = prefix .. k .. "=" .. v
    end
end

r:get("/echo/:name", function(req, res)
    local out = { "method=" .. req.method, "path=" .. req.path }
    lines("query.", req.query, out)
    lines("header.", req.headers, out)
    lines("param.", req.params, out)
    table.sort(out)
    res:send(table.concat(out, "\n"))
end)

r:route("PURGE", "/echo/:name", function(req, res)
    res:json({ req.method, req.params.name })
end)

r:post("/body", function(req, res)
    local body, err = req:body()
    if not body then return end       -- lunet answered (413, 400) already
    res:header("X-Length", #body)
    res:send(body)
end)

-- Responds without reading the request body.
r:post("/ignore", function(req, res)
    res:send("ignored")
end)

r:put("/items/:id", function(req, res)
    res:status(201):json({ id = req.params.id })
end)

r:delete("/items/:id", function(req, res)
    res:status(204):send()
end)

r:get("/stream", function(req, res)
    for i = 1, 3 do res:write("piece " .. i .. "\n") end
end)

r:get("/fail", function(req, res)
    error("boom in the handler")
end)

r:get("/fail-late", function(req, res)
    res:write("partial")
    error("late boom")
end)

r:get("/nothing", function(req, res) end)

r:get("/status/:code", function(req, res)
    res:status(tonumber(req.params.code))
    res:send("body")
end)

r:get("/slow", function(req, res)
    lunet.sleep(50)
    res:send("slow")
end)

-- Misuse raises; the test reads what was raised.
r:get("/misuse", function(req, res)
    local errors = {}
    local function try(f, ...)
        local ok, err = pcall(f, ...)
        errors[#errors + 1] = ok and "no error" or tostring(err):gsub("^[^:]*:%d+: ", "")
    end
    try(res.header, res, "X-Bad", "a\r\nSet-Cookie: x")
    try(res.header, res, "Bad Name", "v")
    try(res.header, res, "Content-Length", "3")
    try(res.status, res, 42)
    res:header("X-Set", { "one", "two" })
    res:send(json.encode(errors))
    try(res.send, res, "again")
    try(res.status, res, 200)
    lunet.log("info", "misuse after send: " .. errors[#errors - 1] .. " / " .. errors[#errors])
end)

-- A request kept past its handler: calls on it raise.
local kept
r:get("/keep", function(req, res)
    kept = { req = req, res = res }
    res:send("kept")
end)
r:get("/use-kept", function(req, res)
    local ok, err = pcall(kept.res.send, kept.res, "late")
    local ok2, err2 = pcall(kept.req.body, kept.req)
    local ok3, err3 = pcall(function() return kept.req.headers end)
    res:send(tostring(ok) .. " " .. tostring(err):gsub("^[^:]*:%d+: ", "") .. "\n"
        .. tostring(ok2) .. " " .. tostring(err2):gsub("^[^:]*:%d+: ", "") .. "\n"
        .. tostring(ok3) .. " " .. tostring(err3):gsub("^[^:]*:%d+: ", ""))
end)

r:get("/close", function(req, res)
    res:header("Connection", "close")
    res:send("bye")
end)

local small = {
    max_body = 64, max_headers = 8, max_head = 512, max_request_line = 128,
    keepalive_timeout = 400, timeout = 300,
}

-- A plain function handler too (not a router).
local function plain(req, res)
    if req.path == "/body" then
        local body, err = req:body()
        if not body then
            lunet.log("info", "body failed: " .. err)
            return
        end
        return res:send(body)
    end
    r(req, res)
end

http.listen(lunet.getenv("listen"), r)
http.listen(lunet.getenv("listen"), small, plain)
