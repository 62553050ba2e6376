-- lunet.http: the Lua half of the HTTP server and client (the Rust half is
-- lua-api/src/http/: requests are parsed and responses written there; see
-- server.rs's header for the protocol of a connection). Built once per VM on
-- first use of lunet.http (lua-api/src/batteries.rs).

local core, lunet, internals = ...
local cannot_wait, until_read = internals.cannot_wait, internals.until_read
local permitted, write_again = internals.permitted, internals.write_again
local isyieldable = coroutine.isyieldable
local setmetatable, getmetatable, type, error, tostring, xpcall =
    setmetatable, getmetatable, type, error, tostring, xpcall

local c_body, c_fail, c_status, c_header, c_write =
    core.http_body, core.http_fail, core.http_status, core.http_header, core.http_write

local http = {}

-- A traceback for the log where the VM has the debug library (sandboxed
-- ones have not: the message alone names file and line).
local traceback = debug and debug.traceback or function(message) return message end

local function callable(value)
    if type(value) == "function" then return true end
    local meta = getmetatable(value)
    return type(meta) == "table" and meta.__call ~= nil
end

-- Misuse comes back from Rust as `nil, message, MISUSE`: raised at the
-- caller of the method (level 3: past this function and the method).
local MISUSE = "lunet:misuse"
local function raise_misuse(message)
    error(message, 3)
end

-- A response call `write(id, ...)`, made again once there is room when the
-- socket is past its high-water mark (prelude.lua, write_again).
local function written(write, id, ...)
    local ok, err, misuse = write(id, ...)
    if ok == false then ok, err, misuse = write_again(write, id, ...) end
    if misuse == MISUSE then raise_misuse(err) end
    return ok, err
end

------------------------------------------------------------------ requests

-- req: method, path, query, headers (filled by Rust); [1] the connection,
-- [2] the request's number.
local Request = {}
Request.__name = "lunet.http.request"

function Request:body()
    local body, err, misuse = until_read("req:body", c_body, self[1], self[2])
    if misuse == MISUSE then error(err, 2) end
    return body, err
end

local c_fields
Request.__index = function(request, key)
    local method = Request[key]
    if method ~= nil then return method end
    -- headers and query are made on first use (most handlers read neither).
    if key == "headers" or key == "query" then
        local value = c_fields(request[1], request[2], key == "headers")
        if value == nil then error("req." .. key .. ": the request is finished (the connection moved on)", 2) end
        rawset(request, key, value)
        return value
    end
end

----------------------------------------------------------------- responses

-- res: [1] the request's number, [2] the connection.
local Response = {}
Response.__index = Response
Response.__name = "lunet.http.response"

-- `next`, `fields` and `send` are C functions bound to these metatables
-- (server.rs).
local c_next, c_send
c_next, c_fields, c_send = core.http_bind(Request, Response)

function Response:status(code)
    local err = c_status(self[2], self[1], code)
    if err then error(err, 2) end
    return self
end

function Response:header(name, value)
    if type(name) ~= "string" then error("res:header: the name must be a string", 2) end
    local err = c_header(self[2], self[1], name, value)
    if err then error(err, 2) end
    return self
end

function Response:send(body)
    local id = self[2]
    return written(c_send, id, self[1], body)
end

function Response:write(piece)
    local id = self[2]
    return written(c_write, id, self[1], piece)
end

local json_encode
function Response:json(value)
    json_encode = json_encode or lunet.json.encode
    local body = json_encode(value)
    local id = self[2]
    return written(c_send, id, self[1], body, "application/json")
end

------------------------------------------------------------------- server

-- One connection: parse a request (Rust), run the handler, repeat while
-- both sides keep the connection alive. No closure per request.
local function serve(sock, handler, config)
    local id = sock[1]
    core.http_begin(id, config)
    while true do
        local request, response = until_read("lunet.http", c_next, id, nil)
        if not request then return end
        local ok, failure = xpcall(handler, traceback, request, response)
        if not ok then
            c_fail(id, tostring(failure))
            return
        end
    end
end

local drains_itself = false

--- lunet.http.listen(addr [, options], handler) -> bound address
function http.listen(addr, options, handler)
    permitted("listen", "lunet.http.listen")
    if handler == nil then options, handler = nil, options end
    if type(addr) ~= "string" then error("lunet.http.listen: address must be a string like '127.0.0.1:8080'", 2) end
    if options ~= nil and type(options) ~= "table" then error("lunet.http.listen: options must be a table", 2) end
    if not callable(handler) then error("lunet.http.listen: handler must be a function (or a router)", 2) end
    local config = core.http_config(options)
    local tls = options and options.tls
    local bound = lunet.listen(addr, tls and { tls = tls } or nil,
        function(sock) return serve(sock, handler, config) end)
    -- The server drains its own connections (docs/operations.md): while the
    -- host drains, reads are left alone and every answer says
    -- `Connection: close`, so no request in flight is cut.
    if not drains_itself then
        drains_itself = true
        lunet.on_shutdown(function() end)
    end
    return bound
end

------------------------------------------------------------------- router

local Router = {}
Router.__index = Router
Router.__name = "lunet.http.router"

-- "/todos/:id" -> { "todos", ":id" }.
local function split(path)
    local parts = {}
    for part in path:gmatch("[^/]+") do parts[#parts + 1] = part end
    return parts
end

function Router:route(method, pattern, handler)
    if type(method) ~= "string" then error("router: the method must be a string", 2) end
    if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
        error("router: the pattern must be a path starting with /", 2)
    end
    if not callable(handler) then error("router: the handler must be a function", 2) end
    method = method:upper()
    if not pattern:find("/:", 1, true) then
        local by_method = self.exact[pattern]
        if not by_method then
            by_method = {}
            self.exact[pattern] = by_method
        end
        by_method[method] = handler
        return self
    end
    local parts = split(pattern)
    for _, route in ipairs(self.patterns) do
        if route.pattern == pattern then
            route.methods[method] = handler
            return self
        end
    end
    local route = { pattern = pattern, parts = parts, methods = { [method] = handler } }
    self.patterns[#self.patterns + 1] = route
    return self
end

for _, method in ipairs({ "get", "post", "put", "delete", "patch", "head", "options" }) do
    local upper = method:upper()
    Router[method] = function(self, pattern, handler)
        return self:route(upper, pattern, handler)
    end
end

-- The handler for `method` among a path's methods (HEAD falls back to
-- GET), or nil and the Allow list.
local function pick(methods, method)
    local handler = methods[method] or (method == "HEAD" and methods.GET)
    if handler then return handler end
    local allowed = {}
    for name in pairs(methods) do allowed[#allowed + 1] = name end
    if methods.GET and not methods.HEAD then allowed[#allowed + 1] = "HEAD" end
    table.sort(allowed)
    return nil, table.concat(allowed, ", ")
end

local function match(route, parts)
    local pattern = route.parts
    if #pattern ~= #parts then return nil end
    local params
    for i = 1, #pattern do
        local want, got = pattern[i], parts[i]
        if want:byte(1) == 58 then -- ":"
            params = params or {}
            params[want:sub(2)] = got
        elseif want ~= got then
            return nil
        end
    end
    return params or {}
end

function Router:__call(req, res)
    local path, method = req.path, req.method
    local methods = self.exact[path]
    local params
    if methods then
        params = {}
    else
        local parts = split(path)
        for _, route in ipairs(self.patterns) do
            params = match(route, parts)
            if params then
                methods = route.methods
                break
            end
        end
    end
    if not methods then
        res:status(404)
        return res:send("not found\n")
    end
    local handler, allow = pick(methods, method)
    if not handler then
        res:status(405)
        res:header("Allow", allow)
        return res:send("method not allowed\n")
    end
    req.params = params
    return handler(req, res)
end

--- lunet.http.router() -> r, callable as a handler
function http.router()
    return setmetatable({ exact = {}, patterns = {} }, Router)
end

------------------------------------------------------------------- client

local new_socket = internals.new_socket
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

-- A connection to host:port: one kept in the pool, or a new one (a name
-- is resolved first). Returns the socket and whether it was pooled. The
-- pool key is the scheme, host and port, and for https the TLS settings
-- (`tls`: the request's option, checked).
local function open(scheme, host, port, address, literal, timeout, tls)
    local key = scheme .. "://" .. address
    local tls_options
    if scheme == "https" then
        local identity
        tls_options, identity = internals.tls_options(tls, host)
        key = key .. identity
    end
    local pooled = core.pool_take(key, timeout)
    if pooled then return new_socket(pooled, key), nil, true end
    if not literal then
        local ips, err = lunet.resolve(host)
        if not ips then return nil, err end
        address = (ips[1]:find(":", 1, true) and ("[" .. ips[1] .. "]") or ips[1]) .. ":" .. port
    end
    if tls_options then
        local sock, err = internals.tls_connect(address, tls_options, timeout, key)
        if not sock then return nil, "https: " .. err end
        return sock, nil, false
    end
    local sock, err = lunet.connect(address, { timeout = timeout, pool = key })
    return sock, err, false
end

-- One request on one connection: the response and whether the connection
-- may be reused, or nil, err and whether the request is safe to retry.
local function exchange_once(sock, method, target, host, options)
    local id = sock[1]
    local ok, err, misuse = core.http_write_request(id, method, target, host, options.headers, options.body)
    if misuse == MISUSE then error(err, 4) end
    if ok == false then
        ok, err = write_again(core.http_write_request, id, method, target, host, options.headers, options.body)
    end
    if not ok then return nil, err, true end
    local reader = core.http_reader(method, options.max_body)
    local response, keep, started = until_read("lunet.http.request", core.http_response, id, reader)
    if not response then return nil, keep, not started end
    return response, keep
end

--- lunet.http.read_response(sock [, {method=, max_body=}]) -> res, keepalive, bytes
--- | nil, err: one response read off a lunet socket (after a request
--- written with sock:write). Yields.
function http.read_response(sock, options)
    if getmetatable(sock) ~= internals.Socket then error("lunet.http.read_response: expected a lunet socket", 2) end
    if options ~= nil and type(options) ~= "table" then error("lunet.http.read_response: options must be a table", 2) end
    options = options or {}
    if not isyieldable() then cannot_wait("lunet.http.read_response") end
    local reader = core.http_reader((options.method or "GET"):upper(), options.max_body)
    local response, keep, bytes = until_read("lunet.http.read_response", core.http_response, sock[1], reader)
    if not response then return nil, keep end
    return response, keep, bytes
end

-- `location` relative to `url`.
local function resolve_location(url, location)
    if location:find("^%a[%w+.-]*://") then return location end
    local scheme, authority, path = url:match("^(%a[%w+.-]*://)([^/?#]*)([^?#]*)")
    if not scheme then return location end
    if location:sub(1, 2) == "//" then return scheme:sub(1, -3) .. location:sub(3) end
    if location:sub(1, 1) == "/" then return scheme .. authority .. location end
    return scheme .. authority .. path:gsub("[^/]*$", "") .. location
end

--- lunet.http.request{method=, url=, headers=, body=, timeout=, redirects=, max_body=, tls=}
--- -> res {status, reason, headers, body} | nil, err. Yields.
function http.request(options)
    permitted("net", "lunet.http.request")
    if type(options) ~= "table" then error("lunet.http.request: expected a table {url = ..., method = ...}", 2) end
    local url, method, body = options.url, options.method or "GET", options.body
    if type(url) ~= "string" then error("lunet.http.request: url must be a string", 2) end
    if type(method) ~= "string" then error("lunet.http.request: method must be a string", 2) end
    if body ~= nil and type(body) ~= "string" then error("lunet.http.request: body must be a string", 2) end
    if options.headers ~= nil and type(options.headers) ~= "table" then
        error("lunet.http.request: headers must be a table", 2)
    end
    local redirects = options.redirects or 0
    if type(redirects) ~= "number" or redirects < 0 then error("lunet.http.request: redirects must be a number >= 0", 2) end
    local timeout = options.timeout or 60000
    if type(timeout) ~= "number" or timeout <= 0 then error("lunet.http.request: timeout must be a number of ms > 0", 2) end
    local tls = options.tls
    internals.tls_check(tls, "lunet.http.request")
    if not isyieldable() then cannot_wait("lunet.http.request") end
    method = method:upper()
    local request = { headers = options.headers, body = body, max_body = options.max_body }
    for hop = 0, redirects do
        local scheme, host, port, target, address, host_field, literal = core.http_url(url, "lunet.http.request")
        if not scheme then return nil, host end
        local response, keep
        for attempt = 1, 2 do
            local sock, err, pooled = open(scheme, host, port, address, literal, timeout, tls)
            if not sock then return nil, err end
            sock:settimeout(timeout)
            local retry
            response, keep, retry = exchange_once(sock, method, target, host_field, request)
            if response and keep then
                sock:setkeepalive()
            else
                sock:close()
            end
            if response then break end
            -- A pooled connection the server closed meanwhile: once more,
            -- on a new one, if the request is safe to send again.
            if not (pooled and retry and IDEMPOTENT[method] and attempt == 1) then
                return nil, keep
            end
        end
        local location = response.headers.location
        if hop == redirects or not REDIRECT[response.status] or type(location) ~= "string" then
            return response
        end
        url = resolve_location(url, location)
        if response.status == 303 or ((response.status == 301 or response.status == 302) and method == "POST") then
            method, request.body = "GET", nil
        end
    end
end

return http
