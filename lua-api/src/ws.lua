-- lunet.ws: the Lua half of WebSocket (the Rust half, lua-api/src/ws.rs,
-- decodes and writes frames; its header has the protocol). Built once per
-- VM on first use of lunet.ws (lua-api/src/batteries.rs).

local core, lunet, internals = ...
local cannot_wait, until_read = internals.cannot_wait, internals.until_read
local write_again = internals.write_again
local permitted = internals.permitted
local isyieldable = coroutine.isyieldable
local setmetatable, type, error = setmetatable, type, error
local c_recv, c_send, c_close, c_closed = core.ws_recv, core.ws_send, core.ws_close, core.ws_closed
local MISUSE = "lunet:misuse"

local ws = {}

-- ws: [1] the connection, [2] its WsState, [3] the socket object of a
-- client (kept so that it is not collected).
local WebSocket = {}
WebSocket.__index = WebSocket
WebSocket.__name = "lunet.ws"

local function new(id, state, sock)
    return setmetatable({ id, state, sock }, WebSocket)
end

--- ws:recv() -> data, kind ("text", "binary", "close" [, code]) | nil, err. Yields.
function WebSocket:recv()
    local data, kind, code = until_read("ws:recv", c_recv, self[1], self[2])
    if code ~= nil then return data, kind, code end
    return data, kind
end

--- ws:send(data [, "binary"]) -> true | nil, err. Yields while the peer reads slowly
--- (past --high-water); "overloaded" when it cannot wait.
function WebSocket:send(data, kind)
    if type(data) ~= "string" then error("ws:send: data must be a string", 2) end
    local id = self[1]
    local ok, err, misuse = c_send(id, self[2], data, kind)
    if ok == false then ok, err, misuse = write_again(c_send, id, self[2], data, kind) end
    if misuse == MISUSE then error(err, 2) end
    return ok, err
end

--- ws:close([code [, reason]]): sends a close frame, waits (bounded) for the
--- peer's, closes the connection. Yields.
function WebSocket:close(code, reason)
    local id, state = self[1], self[2]
    if code ~= nil and type(code) ~= "number" then error("ws:close: code must be a number", 2) end
    if reason ~= nil and type(reason) ~= "string" then error("ws:close: reason must be a string", 2) end
    local sent, err, misuse = c_close(id, state, code, reason)
    if misuse == MISUSE then error(err, 2) end
    -- The peer answers with its close (RFC 6455 7.1.1); what arrives
    -- before it is dropped. Bounded: 2 s unless the socket has a timeout.
    if sent and isyieldable() and not c_closed(state) then
        core.settimeout(id, self.timeout or 2000)
        repeat
            local data, kind = self:recv()
        until data == nil or kind == "close"
    end
    core.close(id)
    return true
end

--- ws:settimeout(ms): the timeout of each later wait (0 or nil: none).
function WebSocket:settimeout(ms)
    self.timeout = ms
    return core.settimeout(self[1], ms)
end

--- lunet.ws.upgrade(req, res [, options]) -> ws | nil, err
--- options: protocol (the subprotocol to answer with), max_frame, max_message.
function ws.upgrade(req, res, options)
    if type(req) ~= "table" or type(req[1]) ~= "number" then
        error("lunet.ws.upgrade: expected the req and res of a lunet.http handler", 2)
    end
    if options ~= nil and type(options) ~= "table" then error("lunet.ws.upgrade: options must be a table", 2) end
    local state = core.ws_state(false, options)
    local ok, err = core.ws_upgrade(req[1], req[2], options and options.protocol)
    if not ok then return nil, err end
    return new(req[1], state)
end

--- lunet.ws.connect(url [, options]) -> ws | nil, err. Yields.
--- options: timeout (ms, connect and handshake), protocols ("a, b"),
--- max_frame, max_message, tls (wss://: {ca=, verify=, server_name=}).
function ws.connect(url, options)
    permitted("net", "lunet.ws.connect")
    if type(url) ~= "string" then error("lunet.ws.connect: url must be a string", 2) end
    if options ~= nil and type(options) ~= "table" then error("lunet.ws.connect: options must be a table", 2) end
    options = options or {}
    internals.tls_check(options.tls, "lunet.ws.connect")
    if not isyieldable() then cannot_wait("lunet.ws.connect") end
    local scheme, host, port, target, address, host_field, literal = core.http_url(url, "lunet.ws.connect")
    if not scheme then return nil, host end
    if not literal then
        local ips, err = lunet.resolve(host)
        if not ips then return nil, err end
        address = (ips[1]:find(":", 1, true) and ("[" .. ips[1] .. "]") or ips[1]) .. ":" .. port
    end
    local timeout = options.timeout or 10000
    local sock, err
    if scheme == "wss" then
        -- A pool of its own: a WebSocket is never put back, so this
        -- takes no connection that another caller pooled.
        local tls, identity = internals.tls_options(options.tls, host)
        sock, err = internals.tls_connect(address, tls, timeout, "wss://" .. address .. identity)
        if not sock then return nil, "wss: " .. err end
    else
        sock, err = lunet.connect(address, timeout)
        if not sock then return nil, err end
    end
    local id = sock[1]
    local state = core.ws_state(true, options)
    local key
    key, err = core.ws_request(id, state, host_field, target, options.protocols)
    if not key then
        sock:close()
        return nil, err
    end
    local ok, protocol = until_read("lunet.ws.connect", core.ws_accept, id, key)
    if not ok then
        sock:close()
        return nil, protocol
    end
    sock:settimeout(options.timeout and timeout or 0)
    local socket = new(id, state, sock)
    socket.protocol = protocol
    return socket
end

return ws
