-- lunet.redis: a Redis client on lunet sockets (lua-resty-redis's
-- conventions: I/O failures return nil, err; misuse raises). Commands are
-- encoded here; replies are parsed in Rust (sock:readreply,
-- core/src/proto/resp.rs). Loaded by prelude.lua with (core, lunet).

local core, lunet = ...
local concat, select, type, tostring, error, setmetatable, ipairs =
    table.concat, select, type, tostring, error, setmetatable, ipairs
local math_type = math.type
local connect_allowed = core.redis_connect_allowed

local redis = { null = core.null }

local Redis = {}
Redis.__index = Redis
Redis.__name = "lunet.redis"

-- One command as a RESP array of bulk strings; `level` points errors at the
-- caller of the public method.
local function encode(level, n, ...)
    local parts, at = { "*", n, "\r\n" }, 3
    for i = 1, n do
        local arg = select(i, ...)
        local kind = type(arg)
        if kind == "number" then
            -- Integers as integers (2.0 too), as Redis expects.
            if math_type(arg) == "float" and arg == arg // 1 and arg > -2^53 and arg < 2^53 then
                arg = ("%d"):format(arg)
            else
                arg = tostring(arg)
            end
        elseif kind ~= "string" then
            error("lunet.redis: argument #" .. i .. " must be a string or a number, got " .. kind, level)
        end
        parts[at + 1], parts[at + 2], parts[at + 3], parts[at + 4] = "$", #arg, "\r\n", arg
        parts[at + 5] = "\r\n"
        at = at + 5
    end
    return concat(parts, "", 1, at)
end

-- A failed read or write leaves the connection in an unknown state: it is
-- closed, so a half-read reply is never taken for the next one.
local function failed(self, err)
    self:close()
    return nil, err
end

-- Encodes a command and queues it; misuse raises at the caller of the
-- public method that called this.
local function queue(self, ...)
    local sock = self.sock
    if not sock then return nil, "closed" end
    local n = select("#", ...)
    if n == 0 then error("lunet.redis: expected a command", 3) end
    local ok, err = sock:write(encode(4, n, ...))
    if not ok then return failed(self, err) end
    return true
end

--- r:send(command, ...): queues a command; its reply is read with r:read().
function Redis:send(...)
    -- Not a tail call: the error levels of `queue` count this frame.
    local ok, err = queue(self, ...)
    if ok then return true end
    return nil, err
end

--- r:read(): the next reply (yields): a value, or nil, err.
function Redis:read()
    local sock = self.sock
    if not sock then return nil, "closed" end
    local value, err, is_reply = sock:readreply()
    if value ~= nil then return value end
    if not is_reply then return failed(self, err) end
    return nil, err
end

--- r:call(command, ...): send, then read its reply (yields).
function Redis:call(...)
    local ok, err = queue(self, ...)
    if not ok then return nil, err end
    return self:read()
end

function Redis:close()
    local sock = self.sock
    if sock then
        self.sock = nil
        sock:close()
    end
    return true
end

function Redis:__tostring()
    return "lunet.redis(" .. self.addr .. ")"
end

--- lunet.redis.connect(addr [, options]): options are lunet.connect's
--- (timeout, bind, tls) and password, db.
function redis.connect(addr, options)
    connect_allowed()
    if type(addr) ~= "string" then
        error("lunet.redis.connect: addr must be a string like '127.0.0.1:6379'", 2)
    end
    if options ~= nil and type(options) ~= "table" and type(options) ~= "number" then
        error("lunet.redis.connect: options must be a table or a timeout in ms", 2)
    end
    local sock, err = lunet.connect(addr, options)
    if not sock then return nil, err end
    local self = setmetatable({ sock = sock, addr = addr }, Redis)
    if type(options) == "table" then
        -- AUTH before SELECT: a server with a password refuses SELECT first.
        for _, setup in ipairs({ { "AUTH", options.password }, { "SELECT", options.db } }) do
            if setup[2] ~= nil then
                local ok, setup_err = self:call(setup[1], setup[2])
                if not ok then
                    self:close()
                    return nil, setup_err
                end
            end
        end
    end
    return self
end

return redis
