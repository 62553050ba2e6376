-- The server of bench/lane.sh. One request per line, one "ok" line back:
--   f  answers at once (a fast request)
--   s  does a 20 ms blocking call on the lane first (lunet.lane.sleep(20))
--   w  inserts one row through SQLite on the lane (needs db=FILE)
--
--   lunet serve bench/lane_server.lua listen=127.0.0.1:0 [db=FILE]
local lunet = require "lunet"

local db
local path = lunet.getenv("db")
if path then
    db = assert(lunet.db.open(path))
    assert(db:exec("create table if not exists writes (id integer primary key, payload text)"))
end
local PAYLOAD = string.rep("x", 64)

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), function(sock)
    local readline, write = sock.readline, sock.write
    while true do
        local request = readline(sock)
        if not request then return end
        if request == "s" then
            lunet.lane.sleep(20)
        elseif request == "w" then
            local changes, err = db:exec("insert into writes (payload) values (?)", PAYLOAD)
            if not changes then
                write(sock, "error ", err, "\n")
                goto continue
            end
        end
        write(sock, "ok\n")
        ::continue::
    end
end)
