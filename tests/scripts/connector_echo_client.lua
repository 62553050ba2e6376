-- A scripted echo client for `lunet load --script`: every request sends a
-- numbered line and checks that the same line comes back.
--   lunet load --script tests/scripts/connector_echo_client.lua 127.0.0.1:7001
local load = require "load"
local lunet = require "lunet"

local size = tonumber(lunet.getenv("size", "32"))

load.run(function(sock, index)
    local n = 0
    while load.running() do
        n = n + 1
        local line = string.format("%d:%d:", index, n)
        line = line .. string.rep("x", size - #line)
        local ok, err = load.request(function()
            sock:write(line, "\n")
            local back, err = sock:readline()
            if not back then return nil, err end
            if back ~= line then return nil, "echo mismatch" end
            return true
        end)
        if not ok then return end
    end
end)
