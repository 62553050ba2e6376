-- tests/pool.rs: an accepted socket cannot go to an outbound pool.
local lunet = require "lunet"
local bound = lunet.listen("127.0.0.1:0", function(sock)
    local ok, err = pcall(sock.setkeepalive, sock)
    sock:write(tostring(ok), " ", tostring(err), "\n")
end)
local client = assert(lunet.connect(bound, 2000))
print("accepted=" .. tostring(client:readline()))
client:close()
lunet.exit()
