-- lunet.cluster: names across nodes, remote references, the live nodes
-- and the cluster's events (docs/cluster.md). Built on a VM's first use
-- of `lunet.cluster` (lua-api/src/batteries.rs). Every call asks the
-- process's cluster service (cluster/node.lua) through
-- `core.cluster_request`, which checks the `cluster` capability again.

local core, lunet, internals = ...
local yield, permitted = internals.yield, internals.permitted
local OP_CALL = core.OP.CALL
local request, make_ref = core.cluster_request, core.cluster_ref
local error, type = error, type

local cluster = {}

local function answer(token, err)
    if not token then error(err, 3) end
    -- (true, true, values...) or (true, false, why) from the cluster
    -- service; (false, why) if it could not answer at all.
    local results = table.pack(yield(OP_CALL, token))
    if not results[1] then error(results[2], 3) end
    if not results[2] then error(results[3], 3) end
    return table.unpack(results, 3, results.n)
end

local function check_name(what, name)
    if type(name) ~= "string" then
        error(what .. ": expected a name (a string), got " .. type(name), 3)
    end
end

-- Takes `name` across the cluster for `handle` (default: the calling
-- service), a service of this process; raises if a live service of any
-- node holds it.
function cluster.register(name, handle)
    permitted("cluster", "lunet.cluster.register")
    check_name("lunet.cluster.register", name)
    if handle == nil then
        handle = lunet.self()
    elseif math.type(handle) ~= "integer" then
        error("lunet.cluster.register: the handle must be a service handle (an integer), got "
            .. type(handle), 2)
    end
    return answer(request("lunet.cluster.register", "register", name, handle))
end

-- A remote reference to the service of any node that holds `name`, or
-- nil when no node serves it.
function cluster.query(name)
    permitted("cluster", "lunet.cluster.query")
    check_name("lunet.cluster.query", name)
    local node = answer(request("lunet.cluster.query", "query", name))
    if node == nil then return nil end
    return make_ref(name, node)
end

-- The names of the live nodes, this one included, sorted.
function cluster.nodes()
    permitted("cluster", "lunet.cluster.nodes")
    return answer(request("lunet.cluster.nodes", "nodes"))
end

-- This node's name.
function cluster.node()
    permitted("cluster", "lunet.cluster.node")
    return answer(request("lunet.cluster.node", "node"))
end

-- Stores module `name` at `version` with its `source` in the cluster's
-- module store (JetStream): nodes that lack it fetch it there.
function cluster.push(name, version, source)
    permitted("cluster", "lunet.cluster.push")
    for what, value in pairs({ name = name, version = version, source = source }) do
        if type(value) ~= "string" then
            error("lunet.cluster.push: " .. what .. " must be a string, got " .. type(value), 2)
        end
    end
    return answer(request("lunet.cluster.push", "push", name, version, source))
end

local EVENTS = { ["cluster.nodeup"] = true, ["cluster.nodedown"] = true }

-- lunet.attach("cluster.nodeup" | "cluster.nodedown", fn) comes here:
-- `fn(node)` runs in this service for each node that comes or goes.
function cluster.attach(event, fn)
    permitted("cluster", "lunet.attach")
    if not EVENTS[event] then
        error("lunet.attach: the cluster's events are cluster.nodeup and cluster.nodedown, got "
            .. tostring(event), 2)
    end
    if type(fn) ~= "function" then error("lunet.attach: expected (event, fn)", 2) end
    local _ = lunet.fire -- loads the runtime model, whose attach this is
    local service = lunet.query(".cluster")
    if not service then
        error("lunet.attach: this process is not in a cluster (start it with --cluster nats://HOST:PORT --node NAME)", 2)
    end
    local token, err, id = core.attach_remote(service, event, function(_, node) return fn(node) end)
    if not token then error(err, 2) end
    local ok, why = yield(OP_CALL, token)
    if not ok then
        core.detach(id)
        error(why, 2)
    end
    return true
end

-- The cluster service's body (only it may call this).
function cluster.serve(url, node)
    permitted("cluster", "lunet.cluster.serve")
    local run = core.cluster_node()
    return run(core, lunet, internals, core.cluster_internals(), url, node)
end

return cluster
