-- One listener whose first line names the API call to exercise; each
-- command answers with one line the test compares.
local lunet = require "lunet"

local commands = {}

function commands.readn(sock)
    local data = sock:readn(5)
    local rest = sock:readline()
    sock:write("[", data, "][", rest, "]\n")
end

function commands.readn_partial(sock)
    local data, err, partial = sock:readn(10)
    sock:write(tostring(data), " ", tostring(err), " ", tostring(partial), "\n")
end

function commands.readn_timeout(sock)
    sock:settimeout(200)
    local data, err, partial = sock:readn(10)
    sock:write(tostring(data), " ", tostring(err), " ", tostring(partial), "\n")
end

function commands.readuntil(sock)
    local data = sock:readuntil("--END--")
    local rest = sock:readline()
    sock:write("[", data, "][", rest, "]\n")
end

function commands.readuntil_partial(sock)
    local data, err, partial = sock:readuntil("|")
    sock:write(tostring(data), " ", tostring(err), " ", tostring(partial), "\n")
end

function commands.readuntil_max(sock)
    local data, err = sock:readuntil("|", 8)
    sock:write(tostring(data), " ", tostring(err), "\n")
end

function commands.readsome(sock)
    local first = sock:readsome(2)
    local second = sock:readsome()
    sock:write("[", first, "][", second, "]\n")
end

function commands.readsome_closed(sock)
    local data, err = sock:readsome()
    sock:write(tostring(data), " ", tostring(err), "\n")
end

function commands.readline_max(sock)
    local line, err = sock:readline(10)
    sock:write(tostring(line), " ", tostring(err), "\n")
end

function commands.readline_eof(sock)
    local line, err = sock:readline()
    sock:write(tostring(line), " ", tostring(err), "\n")
end

function commands.crlf(sock)
    local first = sock:readline()
    local second = sock:readline()
    local third = sock:readline()
    sock:write("[", first, "][", second, "][", third, "]\n")
end

function commands.write_values(sock)
    local ok = sock:write("a", 1, 2.5, "b", "\n")
    sock:write(tostring(ok), "\n")
end

function commands.write_big(sock)
    sock:write(string.rep("x", 3 * 1024 * 1024), "\n")
end

function commands.peer(sock)
    sock:write(sock:peer(), "\n")
end

function commands.getenv(sock)
    sock:write(tostring(lunet.getenv("greeting")), " ",
        lunet.getenv("missing", "fallback"), " ",
        tostring(lunet.getenv("missing")), "\n")
end

function commands.close(sock)
    sock:write("bye\n")
    sock:close()
end

function commands.timeout(sock)
    sock:settimeout(200)
    local line, err = sock:readline()
    if line then
        sock:write("line ", line, "\n")
    else
        sock:write(err, "\n")
    end
end

function commands.no_timeout(sock)
    sock:settimeout(200)
    sock:settimeout(0)
    local line, err = sock:readline()
    sock:write(tostring(line), " ", tostring(err), "\n")
end

function commands.sleep_order(sock)
    local order = {}
    for _, ms in ipairs { 30, 10, 20 } do
        lunet.fork(function()
            lunet.sleep(ms)
            order[#order + 1] = ms
        end)
    end
    while #order < 3 do
        lunet.sleep(5)
    end
    sock:write(table.concat(order, ","), "\n")
end

function commands.timeout_order(sock)
    local order = {}
    for _, ms in ipairs { 30, 10, 20 } do
        lunet.timeout(ms, function()
            order[#order + 1] = ms
        end)
    end
    while #order < 3 do
        lunet.sleep(5)
    end
    sock:write(table.concat(order, ","), "\n")
end

function commands.fork_args(sock)
    local got
    lunet.fork(function(a, b, c)
        got = table.concat({ tostring(a), tostring(b), tostring(c) }, ",")
    end, 1, "two", nil)
    while not got do
        lunet.sleep(1)
    end
    sock:write(got, "\n")
end

function commands.fork_write(sock)
    local done = false
    lunet.fork(function()
        lunet.sleep(10)
        sock:write("from fork\n")
        done = true
    end)
    while not done do
        lunet.sleep(5)
    end
    sock:write("from handler\n")
end

function commands.now(sock)
    local before = lunet.now()
    lunet.sleep(20)
    local after = lunet.now()
    sock:write(type(before), " ", tostring(after - before >= 19), "\n")
end

function commands.connect(sock)
    local target = sock:readline()
    local upstream, err = lunet.connect(target, 2000)
    sock:write(tostring(upstream ~= nil), " ", tostring(err), "\n")
end

function commands.upstream(sock)
    local target = sock:readline()
    local upstream, err = lunet.connect(target, 2000)
    if not upstream then
        sock:write("connect failed ", tostring(err), "\n")
        return
    end
    upstream:settimeout(5000)
    upstream:write("hello upstream\n")
    local answer, read_err = upstream:readline()
    upstream:close()
    sock:write(tostring(answer), " ", tostring(read_err), "\n")
end

-- A socket used after close: close twice, then write and read.
function commands.use_after_close(sock)
    local target = sock:readline()
    local upstream, err = lunet.connect(target, 2000)
    if not upstream then
        sock:write("connect failed ", tostring(err), "\n")
        return
    end
    upstream:close()
    upstream:close()
    local ok, write_err = upstream:write("x")
    local line, read_err = upstream:readline()
    sock:write(tostring(ok), " ", tostring(write_err), " ", tostring(line), " ", tostring(read_err), "\n")
end

-- __gc finalizers that use the socket while the handler allocates heavily:
-- reads the line count, then that many lines; every line leaves garbage
-- with a finalizer behind. Answers how many finalizer calls failed.
function commands.gc_churn(sock)
    local count = tonumber(sock:readline())
    local ran, failed = 0, 0
    local function finalizer()
        ran = ran + 1
        local ok = pcall(sock.peer, sock)
        local ok_write = pcall(sock.write, sock, "")
        if not (ok and ok_write) then failed = failed + 1 end
    end
    local keep = {}
    for i = 1, count do
        local line = sock:readline()
        if not line then break end
        setmetatable({}, { __gc = finalizer })
        keep[i % 64] = line .. string.rep("y", 256)
    end
    collectgarbage()
    sock:write("finalizers ran ", tostring(ran > 0), " failed ", failed, "\n")
end

-- lunet.log(level, ...): logs the values like print, tab-separated.
function commands.log(sock)
    local tagged = setmetatable({}, { __tostring = function() return "<tagged>" end })
    lunet.log("info", "log-check", 1, 2.5, nil, true, tagged)
    lunet.log("warn", "log-single")
    local ok, err = pcall(lunet.log, "hello")
    local ok_level, err_level = pcall(lunet.log, "verbose", "x")
    sock:write(tostring(ok), " ", tostring(err), "|", tostring(ok_level), " ", tostring(err_level), "\n")
end

lunet.listen(lunet.getenv("listen"), function(sock)
    local name = sock:readline()
    local command = name and commands[name]
    if not command then
        sock:write("unknown command ", tostring(name), "\n")
        return
    end
    command(sock)
end)
