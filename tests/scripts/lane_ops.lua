-- Lane calls for tests/lane.rs. Each connection sends command lines, one
-- answer line per command:
--   ping                     -> pong (never touches the lane)
--   started_sleep MS         -> "started", then lunet.lane.sleep(MS), then "slept <result>"
--   sleep MS                 -> lunet.lane.sleep(MS) as "<result> <err>"
--   timeout_probe MS         -> two forks occupy the lane with lane.sleep(MS),
--                               then this session's own lane.sleep(1): "<result> <err>"
--   fs_roundtrip PATH        -> writes all 256 byte values, reads them back: "same <n>" or what differs
--   fs_read PATH             -> "data <contents>" or "nil <err>"
--   fs_write PATH DATA       -> "<result> <err>"
--   resolve HOST             -> "ips <ip>,<ip>,..." or "nil <err>"
local lunet = require "lunet"

local commands = {}

function commands.ping(sock)
    sock:write("pong\n")
end

function commands.started_sleep(sock, ms)
    sock:write("started\n")
    local ok, err = lunet.lane.sleep(tonumber(ms))
    sock:write("slept ", tostring(ok), " ", tostring(err), "\n")
end

function commands.sleep(sock, ms)
    local ok, err = lunet.lane.sleep(tonumber(ms))
    sock:write(tostring(ok), " ", tostring(err), "\n")
end

-- With --lane-threads 1 --lane-queue 1 the two forks hold the only thread
-- and the only queue slot (or one holds the slot and the other waits for
-- it first), so this session's call waits for a slot past any short
-- --lane-timeout-ms.
function commands.timeout_probe(sock, ms)
    ms = tonumber(ms)
    lunet.fork(lunet.lane.sleep, ms)
    lunet.fork(lunet.lane.sleep, ms)
    lunet.sleep(20) -- lets both forks run up to their lane call first
    local ok, err = lunet.lane.sleep(1)
    sock:write(tostring(ok), " ", tostring(err), "\n")
end

function commands.fs_roundtrip(sock, path)
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local data = table.concat(bytes):rep(64)
    local ok, err = lunet.fs.write(path, data)
    if not ok then return sock:write("write failed ", tostring(err), "\n") end
    local back, rerr = lunet.fs.read(path)
    if back == data then
        sock:write("same ", #back, "\n")
    else
        sock:write("differs ", tostring(back and #back), " ", tostring(rerr), "\n")
    end
end

function commands.fs_read(sock, path)
    local data, err = lunet.fs.read(path)
    if data then
        sock:write("data ", data, "\n")
    else
        sock:write("nil ", tostring(err), "\n")
    end
end

function commands.fs_write(sock, path, data)
    local ok, err = lunet.fs.write(path, data or "")
    sock:write(tostring(ok), " ", tostring(err), "\n")
end

function commands.resolve(sock, host)
    local ips, err = lunet.resolve(host)
    if ips then
        sock:write("ips ", table.concat(ips, ","), "\n")
    else
        sock:write("nil ", tostring(err), "\n")
    end
end

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local words = {}
        for word in line:gmatch("%S+") do words[#words + 1] = word end
        local command = commands[words[1]]
        if command then
            command(sock, table.unpack(words, 2))
        else
            sock:write("unknown ", line, "\n")
        end
    end
end)
