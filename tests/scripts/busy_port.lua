-- Listens on the address the test passes in busy=, which the test holds.
local lunet = require "lunet"
lunet.listen(lunet.getenv("busy"), function(sock) end)
