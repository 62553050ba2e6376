-- bench/cluster.sh: the serving node's service, registered in the cluster
-- as `name=` (default "echo"): answers a call with its values, counts
-- sends.
local lunet = require "lunet"
local sent = 0
lunet.dispatch(function(_, op, ...)
    if op == "sent" then
        sent = sent + 1
    elseif op == "count" then
        return sent
    elseif op == "sleep" then
        lunet.sleep(...)
    else
        return op, ...
    end
end)
-- After dispatch: a name takes calls as soon as it is subscribed, before
-- register returns (its claim waits 150 ms for an objection).
lunet.cluster.register(lunet.getenv("name", "echo"))
