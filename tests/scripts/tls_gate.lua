-- skynet's gate -> agent over TLS: the gate reads the first line ("send
-- NAME") and hands the socket to an agent (gate_agent.lua), which answers
-- every later line with "agent-HANDLE NAME: LINE". The TLS session travels
-- with the connection.
--
--   lunet serve tests/scripts/tls_gate.lua listen=127.0.0.1:0 cert=FILE key=FILE
local lunet = require "lunet"

local agent = lunet.spawn("gate_agent.lua")
local tls = { cert = lunet.getenv("cert"), key = lunet.getenv("key") }

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), { tls = tls }, function(sock)
    local first = sock:readline()
    local name = first and first:match("^send (%S+)$")
    if not name then return end
    assert(lunet.send(agent, "take", sock, name))
end)
