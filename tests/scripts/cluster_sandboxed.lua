-- A sandbox spawned without the cluster capability (tests/cluster.rs):
-- answers what lunet.cluster.register raised.
local lunet = require "lunet"
lunet.dispatch(function()
    local ok, err = pcall(lunet.cluster.register, "sneaky")
    return ok and "registered" or err
end)
