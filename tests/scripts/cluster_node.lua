-- A node of tests/cluster.rs: a line protocol on its listener drives the
-- cluster calls; workers (cluster_worker.lua) hold the names.
local lunet = require "lunet"
local node = lunet.getenv("node", "?")

local events = {}
lunet.attach("cluster.nodeup", function(name) events[#events + 1] = "up " .. name end)
lunet.attach("cluster.nodedown", function(name) events[#events + 1] = "down " .. name end)

local function words(line)
    local list = {}
    for word in line:gmatch("%S+") do list[#list + 1] = word end
    return list
end

local function ref_of(name)
    local ref = lunet.cluster.query(name)
    if not ref then error("no node serves '" .. name .. "'", 0) end
    return ref
end

local commands = {}

function commands.spawn(name, group)
    lunet.spawn({ script = "cluster_worker.lua", caps = { cluster = true } }, name, group)
    return "spawned"
end

function commands.register(name)
    lunet.cluster.register(name)
    return "registered"
end

function commands.query(name)
    local ref = lunet.cluster.query(name)
    return ref and (ref.name .. "@" .. ref.node) or "nil"
end

function commands.nodes()
    return table.concat(lunet.cluster.nodes(), ",")
end

function commands.events()
    return table.concat(events, ";")
end

-- N calls in order to `name`, each checked.
function commands.calls(name, n)
    local ref = ref_of(name)
    for i = 1, tonumber(n) do
        local got = lunet.call(ref, "seq", node, i)
        if got ~= i then error(string.format("call %d answered %s", i, tostring(got)), 0) end
    end
    return "called " .. n
end

-- N sends in order, then a call that says how many arrived in order.
function commands.sends(name, n)
    local ref = ref_of(name)
    for i = 1, tonumber(n) do
        assert(lunet.send(ref, "sent", node, i))
    end
    local last, disorder = lunet.call(ref, "seen", node)
    if disorder ~= "" then error(disorder, 0) end
    return "seen " .. last
end

function commands.call(name, op, ...)
    local results = table.pack(lunet.call(ref_of(name), op, ...))
    for i = 1, results.n do results[i] = tostring(results[i]) end
    return table.concat(results, " ", 1, results.n)
end

-- N calls to a group: how many each node took ("a=3,b=4").
function commands.gcall(group, n)
    local g, took = lunet.group(group), {}
    for _ = 1, tonumber(n) do
        local where = g:call("where")
        took[where] = (took[where] or 0) + 1
    end
    local list = {}
    for where, count in pairs(took) do list[#list + 1] = where .. "=" .. count end
    table.sort(list)
    return table.concat(list, ",")
end

function commands.gsend(group, tag)
    return lunet.group(group):send("tagged", tag)
end

-- A runtime of module t.cps (tests/modules), registered as `name`.
function commands.runtime(name)
    local runtime = lunet.spawn { modules = { "t.cps" } }
    lunet.cluster.register(name, runtime)
    return "runtime"
end

-- Continuation passing across nodes: the runtime `first` answers "ask"
-- with the continuation it was given, which then runs in `second`.
function commands.cps(first, second)
    local ask, done = lunet.sub("t.cps", "ask", "2.0"), lunet.sub("t.cps", "done", "2.0")
    local k, value = lunet.call(ref_of(first), ask, 21, done)
    if k ~= done then error("the continuation came back as " .. tostring(k), 0) end
    -- A send, then a call from the same sender: they arrive in order.
    local second_ref = ref_of(second)
    lunet.send(second_ref, k, value, node)
    local result = lunet.call(second_ref, lunet.sub("t.cps", "result", "2.0"))
    if not result then error("the continuation had not run before the next call", 0) end
    return result.value .. " " .. result.from
end

-- A runtime of `module` (which this node may have to fetch from the
-- cluster's store) runs its Sub `sub` with `arg`.
function commands.fetched(module, sub, arg)
    local runtime = lunet.spawn { modules = { module } }
    return lunet.call(runtime, lunet.sub(module, sub), arg)
end

-- Hands `via` a reference to `target`, which it calls.
function commands.relay(via, target)
    return table.concat({ lunet.call(ref_of(via), "relay", ref_of(target)) }, " ")
end

-- Registers prefix1..prefixN for this host, all at once: the numbers it
-- got, sorted, joined by commas (those taken elsewhere are left out).
function commands.race(prefix, n)
    local won, finished, me = {}, 0, coroutine.running()
    for i = 1, tonumber(n) do
        lunet.fork(function()
            if pcall(lunet.cluster.register, prefix .. i) then won[#won + 1] = i end
            finished = finished + 1
            if finished == tonumber(n) then lunet.wakeup(me) end
        end)
    end
    lunet.wait()
    table.sort(won)
    return table.concat(won, ",")
end

-- A call with a string of `bytes` bytes: the size the worker saw.
function commands.big(name, bytes)
    return lunet.call(ref_of(name), "size", string.rep("x", tonumber(bytes)))
end

-- What a sandbox without the cluster capability gets.
function commands.sandboxed()
    local child = lunet.spawn({ script = "cluster_sandboxed.lua" })
    local said = lunet.call(child)
    if said ~= "registered" then error(said, 0) end
    return said
end

-- A call through a reference made before the name's node went away.
local kept = {}
function commands.keep(name)
    kept[name] = ref_of(name)
    return "kept"
end

function commands.call_kept(name, op, ...)
    local results = table.pack(lunet.call(kept[name], op, ...))
    for i = 1, results.n do results[i] = tostring(results[i]) end
    return table.concat(results, " ", 1, results.n)
end

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line = sock:readline()
        if not line then return end
        local args = words(line)
        local command = commands[table.remove(args, 1)]
        local ok, result = pcall(command, table.unpack(args))
        if ok then
            sock:write("ok ", tostring(result), "\n")
        else
            sock:write("err ", tostring(result):gsub("\n", " "), "\n")
        end
    end
end)
