-- server-scripts/http_hello_lua.lua: HTTP/1.1 "hello world" server in plain
-- Lua on the socket API (an example: server-scripts/http_hello.lua is the
-- same on lunet.http, which parses in Rust).
--
--   lunet serve server-scripts/http_hello_lua.lua listen=127.0.0.1:8080
--
-- Answers `hello world` to any method and path. Keep-alive is the default
-- for HTTP/1.1 (`Connection: close` ends it) and opt-in for HTTP/1.0;
-- pipelined requests work because each request is read from the socket's
-- buffer in order. Request bodies (Content-Length up to 1 MiB, or chunked)
-- are read and dropped so the next request starts at the right byte.
-- Malformed input gets `400 Bad Request` and the connection is closed.
-- While the host drains (a reload or SIGTERM: docs/operations.md) every
-- answer says `Connection: close`, so keep-alive clients finish their
-- request here and reconnect to a new host: no request is refused or cut.
--
-- Hot path: one readline per request line and header, one write per
-- response, responses built once at load time. It is benchmarked with wrk
-- against nginx + lua, so keep it that way.

local lunet = require "lunet"

local find, match, lower, sub = string.find, string.match, string.lower, string.sub
local tonumber = tonumber

local MAX_BODY = 1024 * 1024 -- larger bodies get 413
local MAX_HEADERS = 100      -- more header lines get 400
local BODY = "hello world"

local function response(status, body, connection, head)
    return "HTTP/1.1 " .. status .. "\r\n"
        .. "Server: lunet\r\n"
        .. "Content-Type: text/plain\r\n"
        .. "Content-Length: " .. #body .. "\r\n"
        .. (connection and ("Connection: " .. connection .. "\r\n") or "")
        .. "\r\n"
        .. (head and "" or body)
end

-- [head][connection]: every 200 response there is, built once.
local OK = {
    [false] = {
        keep = response("200 OK", BODY, nil),
        keep10 = response("200 OK", BODY, "keep-alive"),
        close = response("200 OK", BODY, "close"),
    },
    [true] = {
        keep = response("200 OK", BODY, nil, true),
        keep10 = response("200 OK", BODY, "keep-alive", true),
        close = response("200 OK", BODY, "close", true),
    },
}
local BAD_REQUEST = response("400 Bad Request", "bad request\n", "close")
local TOO_LARGE = response("413 Payload Too Large", "payload too large\n", "close")
local NOT_IMPLEMENTED = response("501 Not Implemented", "not implemented\n", "close")

-- Reads and drops a chunked body. Returns true, or nil and the response to
-- send before closing.
local function skip_chunked(sock, readline, readn)
    local total = 0
    while true do
        local size_line = readline(sock)
        if not size_line then
            return nil, BAD_REQUEST
        end
        local hex = match(size_line, "^(%x+)%s*$") or match(size_line, "^(%x+)%s*;")
        if not hex or #hex > 8 then
            return nil, BAD_REQUEST
        end
        local size = tonumber(hex, 16)
        if size == 0 then
            break
        end
        total = total + size
        if total > MAX_BODY then
            return nil, TOO_LARGE
        end
        if not readn(sock, size) or readline(sock) ~= "" then
            return nil, BAD_REQUEST
        end
    end
    -- Trailer fields, then the empty line.
    for _ = 1, MAX_HEADERS do
        local trailer = readline(sock)
        if not trailer then
            return nil, BAD_REQUEST
        end
        if trailer == "" then
            return true
        end
    end
    return nil, BAD_REQUEST
end

local draining = false
lunet.on_shutdown(function() draining = true end)

local function serve(sock)
    -- Methods looked up once per connection, not once per call.
    local readline, readn, write = sock.readline, sock.readn, sock.write

    while true do
        local line, err = readline(sock)
        if line == "" then
            -- RFC 9112 2.2: ignore an empty line before the request line.
            line, err = readline(sock)
        end
        if not line then
            if err == "too long" then
                write(sock, BAD_REQUEST)
            end
            return
        end

        local method, minor = match(line, "^(%u+) %S+ HTTP/1%.([01])$")
        if not method then
            write(sock, BAD_REQUEST)
            return
        end

        local keep_alive = minor == "1"
        local length, chunked, connection = nil, false, nil
        local headers = 0
        while true do
            local header
            header, err = readline(sock)
            if not header then
                if err == "too long" then
                    write(sock, BAD_REQUEST)
                end
                return
            end
            if header == "" then
                break
            end
            headers = headers + 1
            -- The name is a token: no spaces, no folding, not empty.
            local _, colon = find(header, "^[^%s:]+:")
            if not colon or headers > MAX_HEADERS then
                write(sock, BAD_REQUEST)
                return
            end
            -- Only three headers matter; their name lengths are 14, 10, 17.
            local size = colon - 1
            if size == 14 or size == 10 or size == 17 then
                local name = lower(sub(header, 1, size))
                local value = match(header, "^[ \t]*(.-)[ \t]*$", colon + 1)
                if name == "content-length" then
                    local n = find(value, "^%d+$") and tonumber(value)
                    if not n or (length and length ~= n) then
                        write(sock, BAD_REQUEST)
                        return
                    end
                    length = n
                elseif name == "connection" then
                    connection = lower(value)
                elseif name == "transfer-encoding" then
                    if lower(value) ~= "chunked" then
                        write(sock, NOT_IMPLEMENTED)
                        return
                    end
                    chunked = true
                end
            end
        end

        if connection then
            if find(connection, "close", 1, true) then
                keep_alive = false
            elseif find(connection, "keep-alive", 1, true) then
                keep_alive = true
            end
        end

        if chunked then
            if length then
                -- Both framings at once is how requests get smuggled.
                write(sock, BAD_REQUEST)
                return
            end
            local ok, failure = skip_chunked(sock, readline, readn)
            if not ok then
                write(sock, failure)
                return
            end
        elseif length and length > 0 then
            if length > MAX_BODY then
                write(sock, TOO_LARGE)
                return
            end
            if not readn(sock, length) then
                return
            end
        end

        local answers = OK[method == "HEAD"]
        if not keep_alive or draining then
            write(sock, answers.close)
            return
        end
        write(sock, minor == "1" and answers.keep or answers.keep10)
    end
end

lunet.listen(lunet.getenv("listen", "127.0.0.1:8080"), serve)
