-- The cluster service: the process's one NATS connection, a lunet socket
-- (docs/cluster.md has the model and the subjects). Runs in a trusted
-- service registered as ".cluster" (lua-api/src/cluster/mod.rs, step 1).
--
-- 1. Start: connect, INFO/CONNECT/PING-PONG, subscribe to this node's
--    reply inbox and the heartbeats, check no live node has our name.
--    The main chunk returns then: `lunet serve` starts the script after.
-- 2. Other services reach this one through Rust calls that put the
--    process's secret first (mod.rs step 2): register, query, nodes, and
--    the sends and calls of remote references, whose arguments arrive
--    already encoded and are published as they are.
-- 3. A name is the subject `lunet.n.NAME.*`; its holder's node subscribes
--    to it. `.c` is a call (with a reply inbox), `.s` a send, `.q` a probe
--    answered with the node's name. A call to a name nobody subscribes to
--    gets NATS's 503 status: "no responders", at once.
-- 4. Heartbeats: every node publishes `lunet.hb` ("node instance") every
--    HEARTBEAT_MS; a node unheard for NODE_DEAD_MS is down (calls pending
--    to it fail; `cluster.nodedown` fires). Our own heartbeat coming back
--    is how we know the connection still works.
-- 5. The connection lost: every pending call fails, remote sends and
--    calls fail at once (mod.rs step 4) and the service reconnects with a
--    backoff; the subscriptions are made again on the new connection.
-- 6. Leaving: when the process drains (SIGTERM/SIGINT, `lunet.on_shutdown`)
--    the node gives up its names, groups and node name at once, stops its
--    heartbeats and says goodbye on `lunet.bye`: the others report it down
--    without waiting for the heartbeat bound, and a node of the same name
--    may join while this one finishes its sessions. Its own calls to other
--    nodes go on through the grace period.

local core, lunet, internals, calls, url, node = ...
local yield = internals.yield
local OP_CALL = core.OP.CALL
local secret, pack, post = calls.secret, calls.pack, calls.post
local take_call, forward = calls.take_call, calls.forward
local fail_forwarded, fail_forwarded_one = calls.fail_forwarded, calls.fail_forwarded_one
local set_connected = calls.set_connected
local fmt, byte, sub, match, upper = string.format, string.byte, string.sub, string.match, string.upper
local now, log = lunet.now, lunet.log
local running = coroutine.running
local tostring, tonumber, pairs, error, pcall = tostring, tonumber, pairs, error, pcall

local HEARTBEAT_MS = 500
-- Unheard for this long, a node is down: reported at most one heartbeat
-- check later, within the 3 s the reference promises.
local NODE_DEAD_MS = 2000
local PROBE_MS = 2000           -- the longest a probe (register, query) waits
local HANDSHAKE_MS = 5000
local RECONNECT_FIRST_MS, RECONNECT_MAX_MS = 50, 1000
local MAX_CONTROL_LINE = 64 * 1024
-- The first byte of the answer to a probe or a claim (the answers of
-- forwarded calls are read in Rust: forward.rs).
local R_PROBE = byte("n")

local host, port = match(url, "^nats://([^:/]+):(%d+)/?$")
if not host then
    error("--cluster: expected nats://HOST:PORT (an IP address or localhost), got '" .. url .. "'", 0)
end
local address = host .. ":" .. port
local instance = fmt("%x%x%04x", os.time(), now(), math.random(0, 0xffff))
local inbox = "_INBOX." .. node .. "." .. instance .. "."

local sock               -- the NATS connection; nil while it is down
local max_payload = 1024 * 1024
local handlers = {}      -- sid -> function(subject, reply, payload, status)
local sub_lines = {}     -- sid -> its SUB line, sent again on a new connection
local next_sid = 0
local names = {}         -- name -> { handle =, sid = }
-- This service's own requests (probes, claims, the module store): inbox
-- id -> { node =, reply = fn(status, payload), fail = fn(text) }. Calls
-- forwarded for other services are kept in Rust (forward.rs).
local pending = {}
local next_inbox = 0
local nodes = {}         -- other live nodes: name -> { instance =, seen = ms }
-- Nodes that calls wait on before their first heartbeat came: name -> since
-- (ms). Unheard for NODE_DEAD_MS, they are down too.
local awaited = {}
local own_seen = 0       -- when our own heartbeat last came back
local leaving = false    -- step 6: the node said goodbye
local pongs, pong_head, pong_tail = {}, 1, 0

local UNREACHABLE = "the cluster is unreachable (no connection to NATS)"

---------------------------------------------------------------- writing

local function publish(subject, reply, payload)
    if not sock then return nil, UNREACHABLE end
    if #payload > max_payload then
        return nil, fmt("a message of %d bytes is over the server's max_payload (%d)", #payload, max_payload)
    end
    local line = reply and fmt("PUB %s %s %d\r\n", subject, reply, #payload)
        or fmt("PUB %s %d\r\n", subject, #payload)
    local ok, err = sock:write(line, payload, "\r\n")
    if not ok then return nil, "the connection to NATS failed: " .. tostring(err) end
    return true
end

local function subscribe(subject, handler, queue)
    next_sid = next_sid + 1
    local line = queue and fmt("SUB %s %s %d\r\n", subject, queue, next_sid)
        or fmt("SUB %s %d\r\n", subject, next_sid)
    handlers[next_sid], sub_lines[next_sid] = handler, line
    if sock then sock:write(line) end
    return next_sid
end

local function unsubscribe(sid)
    handlers[sid], sub_lines[sid] = nil, nil
    if sock then sock:write(fmt("UNSUB %d\r\n", sid)) end
end

-- Returns once the server has handled everything written before.
local function flush()
    if not sock then return end
    pong_tail = pong_tail + 1
    pongs[pong_tail] = running()
    sock:write("PING\r\n")
    lunet.wait()
end

local function wake_pong()
    if pong_head > pong_tail then return end
    local co = pongs[pong_head]
    pongs[pong_head] = nil
    pong_head = pong_head + 1
    lunet.wakeup(co)
end

---------------------------------------------------------------- requests

local function new_inbox(entry)
    next_inbox = next_inbox + 1
    pending[next_inbox] = entry
    return inbox .. next_inbox, next_inbox
end

-- A call now waits on `name`: if no heartbeat of it came yet, watch for
-- one (heartbeats: awaited).
local function await_node(name)
    if name and name ~= node and not nodes[name] and not awaited[name] then
        awaited[name] = now()
    end
end

local function on_reply(subject, _, payload, status)
    local id = tonumber(sub(subject, #inbox + 1))
    local entry = id and pending[id]
    if not entry then return end -- late: its caller gave up
    pending[id] = nil
    entry.reply(entry, status, payload)
end

-- Fails every request waiting on node `name` (all when nil), forwarded
-- calls included.
local function fail_pending(text, name)
    for id, entry in pairs(pending) do
        if name == nil or entry.node == name then
            pending[id] = nil
            entry.fail(entry, text)
        end
    end
    fail_forwarded(name, text)
end

local function waited_reply(entry, status, answer)
    entry.status, entry.payload = status, answer
    lunet.wakeup(entry.co)
end

local function waited_fail(entry, text)
    entry.failed = text
    lunet.wakeup(entry.co)
end

-- A request this service waits for: the answer's status (NATS's header
-- status, nil without one) and payload; raises when the cluster is
-- unreachable or nobody answers within PROBE_MS.
local function request(subject, payload)
    local co = running()
    local entry = { co = co, reply = waited_reply, fail = waited_fail }
    local reply_to, id = new_inbox(entry)
    local ok, err = publish(subject, reply_to, payload)
    if not ok then
        pending[id] = nil
        error(err, 0)
    end
    local timer = lunet.timeout(PROBE_MS, function()
        if pending[id] then
            pending[id] = nil
            entry.fail(entry, fmt("no answer from the cluster within %d ms", PROBE_MS))
        end
    end)
    lunet.wait()
    timer:cancel()
    if entry.failed then error(entry.failed, 0) end
    return entry.status, entry.payload
end

local CLAIM_MS = 150 -- how long a claim waits for an objection

local function claim_reply(entry, _, answer)
    entry.payload = answer
    lunet.wakeup(entry.co)
end

-- Publishes a claim of this node on `subject` and waits CLAIM_MS for an
-- objection: the objecting node's name, or nil.
local function claim(subject)
    local entry = { co = running(), reply = claim_reply, fail = waited_fail }
    local reply_to, id = new_inbox(entry)
    local ok, err = publish(subject, reply_to, node)
    if not ok then
        pending[id] = nil
        error(err, 0)
    end
    local timer = lunet.timeout(CLAIM_MS, function()
        if pending[id] then
            pending[id] = nil
            lunet.wakeup(entry.co)
        end
    end)
    lunet.wait()
    timer:cancel()
    if entry.failed then error(entry.failed, 0) end
    if entry.payload and byte(entry.payload, 1) == R_PROBE then return sub(entry.payload, 2) end
    return nil
end

-- Who answers a probe of `subject` (what follows its tag), or nil when no
-- one subscribes to it.
local function probe(subject)
    local status, payload = request(subject, "")
    if status == "503" then return nil end
    if byte(payload, 1) ~= R_PROBE then error("a malformed answer to a probe", 0) end
    return sub(payload, 2)
end

---------------------------------------------------------------- names

local function check_name(what, name)
    if type(name) ~= "string" or name == "" or #name > 128 or name:find("[%s%c%.%*>]") then
        error(fmt("%s: '%s' is not a name (1 to 128 characters, no space, '.', '*' or '>')",
            what, tostring(name)), 0)
    end
end

local function release(label)
    local name = match(label, "^'(.*)'$")
    local held = name and names[name]
    if not held then return end
    names[name] = nil
    unsubscribe(held.sid)
end

-- What a name or a group of this node gets is posted to its local
-- service(s) in arrival order. A call is posted by a session of its own (a
-- call's token names the session that waits for the answer), so while
-- such sessions have yet to start, sends wait their turn in one too.
-- `target` is a name's holder (a handle) or a group's name.
local unstarted = 0
local group_post = calls.group_post

local function post_to(target, call, payload)
    if type(target) == "string" then return group_post(target, call, payload) end
    return post(target, call, payload)
end

-- Serves one call: posts it, waits for the local answer, publishes it.
local function serve_call(target, payload, reply, label)
    unstarted = unstarted - 1
    local token, err = post_to(target, true, payload)
    if not token then
        if err == "dead" then release(label) end
        return publish(reply, nil, "e" .. fmt("lunet.call: %s on node '%s' is %s", label, node, err))
    end
    local results = table.pack(yield(OP_CALL, token))
    local answer
    if results[1] then
        local ok, packed = pcall(pack, table.unpack(results, 2, results.n))
        answer = ok and ("r" .. packed)
            or ("e" .. "lunet.call: the answer of " .. label .. " cannot travel: " .. tostring(packed))
    else
        answer = "e" .. tostring(results[2])
    end
    local ok, why = publish(reply, nil, answer)
    if not ok and sock then
        publish(reply, nil, "e" .. fmt("lunet.call: the answer of %s was not sent: %s", label, why))
    end
end

local function serve_send(target, payload, label)
    local ok, err = post_to(target, false, payload)
    if not ok and err == "dead" then release(label) end
end

local function deferred_send(target, payload, label)
    unstarted = unstarted - 1
    serve_send(target, payload, label)
end

local function serve(op, target, reply, payload, label)
    if op == ".c" and reply then
        unstarted = unstarted + 1
        lunet.fork(serve_call, target, payload, reply, label)
    elseif op == ".s" then
        if unstarted == 0 then
            serve_send(target, payload, label)
        else
            unstarted = unstarted + 1
            lunet.fork(deferred_send, target, payload, label)
        end
    end
end

-- Step 3: what arrives for a name this node holds.
local function serve_name(name)
    local label = "'" .. name .. "'"
    return function(subject, reply, payload)
        local held = names[name]
        if not held then return end
        local op = sub(subject, -2)
        if op == ".q" then
            if reply then publish(reply, nil, "n" .. node) end
        elseif op == ".k" then
            -- Another node claims the name (ops.register): a settled holder
            -- keeps it; between two that are both claiming, the smaller
            -- node name does.
            if payload == node or not reply then return end
            if held.settled or node < payload then
                publish(reply, nil, "n" .. node)
            else
                held.lost = payload
                release(label)
            end
        else
            serve(op, held.handle, reply, payload, label)
        end
    end
end

-- Groups: `.c` is a queue subscription (NATS gives each call to one node,
-- which tells the caller it took it), `.s` a plain one (every node).
local groups = {}
local function serve_group(group)
    local label = "group '" .. group .. "'"
    return function(subject, reply, payload)
        local op = sub(subject, -2)
        if op == ".c" and reply then publish(reply, nil, "a" .. node) end
        serve(op, group, reply, payload, label)
    end
end

---------------------------------------------------------------- nodes

local function node_up(name, node_instance)
    nodes[name] = { instance = node_instance, seen = now() }
    log("info", fmt("cluster: node '%s' is up", name))
    lunet.fire("cluster.nodeup", name)
end

local function node_down(name, why)
    if not nodes[name] then return end
    nodes[name] = nil
    log("warn", fmt("cluster: node '%s' is down (%s)", name, why))
    fail_pending(fmt("lunet.call: node '%s' is down (%s)", name, why), name)
    lunet.fire("cluster.nodedown", name)
end

local function on_heartbeat(_, _, payload)
    local name, node_instance = match(payload, "^(%S+) (%S+)$")
    if not name then return end
    if name == node then
        if leaving then return end -- a node of our name may take over
        if node_instance == instance then
            own_seen = now()
        else
            log("error", fmt("cluster: another live node is named '%s' too", node))
        end
        return
    end
    local known = nodes[name]
    if known and known.instance ~= node_instance then
        node_down(name, "it restarted")
        known = nil
    end
    if known then
        known.seen = now()
    else
        node_up(name, node_instance)
    end
end

-- Step 6: another node leaves (the instance that we know, not a newer
-- one of the same name).
local function on_bye(_, _, payload)
    local name, node_instance = match(payload, "^(%S+) (%S+)$")
    local known = name and nodes[name]
    if known and known.instance == node_instance then node_down(name, "it left") end
end

local function heartbeats()
    local beat = node .. " " .. instance
    local function beat_and_check()
        if sock and not leaving then
            publish("lunet.hb", nil, beat)
            if now() - own_seen > NODE_DEAD_MS then
                -- Our own heartbeats no longer come back: the connection
                -- is dead even if the socket has not said so.
                log("warn", "cluster: NATS echoes nothing any more; reconnecting")
                sock:close()
            end
        end
        local t = now()
        for name, known in pairs(nodes) do
            if t - known.seen > NODE_DEAD_MS then
                node_down(name, fmt("no heartbeat for %d ms", t - known.seen))
            end
        end
        for name, since in pairs(awaited) do
            if nodes[name] then
                awaited[name] = nil
            elseif t - since > NODE_DEAD_MS then
                awaited[name] = nil
                fail_pending(fmt("lunet.call: node '%s' is down (never heard from in %d ms)", name, t - since),
                    name)
            end
        end
    end
    -- An error in one round (an event's delivery) is logged; the
    -- heartbeats go on.
    while true do
        local ok, err = pcall(beat_and_check)
        if not ok then log("error", "cluster: heartbeat round failed: " .. tostring(err)) end
        lunet.sleep(HEARTBEAT_MS)
    end
end

---------------------------------------------------------------- the connection

local function protocol_error(line)
    return "protocol error: unexpected '" .. sub(line, 1, 64) .. "'"
end

-- A handler's error is logged: the read loop goes on.
local function deliver(sid, subject, reply, payload, status)
    local handler = handlers[sid]
    if not handler then return end
    local ok, err = pcall(handler, subject, reply, payload, status)
    if not ok then log("error", "cluster: a message on " .. subject .. " failed: " .. tostring(err)) end
end

-- Reads what the server sends until the connection ends; why it ended.
-- Each operation is parsed in Rust from the socket's buffer (read.rs).
-- (`false` from it: wait until the socket has more, as until_read in
-- prelude.lua, which returns only three values.)
local read_op, OP_READ = calls.read, core.OP.READ
local function read_loop(s)
    local id = s[1]
    while true do
        local op, a, subject, reply, payload, status = read_op(id, max_payload)
        while op == false do
            local _, wait_error = yield(OP_READ, id)
            op, a, subject, reply, payload, status = read_op(id, max_payload, wait_error)
        end
        if op == "m" then
            deliver(a, subject, reply, payload, status)
        elseif op == nil then
            return a
        elseif op == "taken" then
            await_node(a) -- a group call's node: if it goes down, the call fails
        elseif op == "ping" then
            s:write("PONG\r\n")
        elseif op == "pong" then
            wake_pong()
        elseif op == "info" then
            max_payload = tonumber(match(a, '"max_payload"%s*:%s*(%d+)')) or max_payload
        elseif op == "err" then
            log("warn", "cluster: NATS says -ERR '" .. sub(a, 1, 256) .. "'")
        end
    end
end

-- INFO, CONNECT, PING -> PONG, then every subscription again.
local function handshake(s)
    s:settimeout(HANDSHAKE_MS)
    local line, err = s:readline(MAX_CONTROL_LINE)
    if not line then return nil, "no INFO from the server: " .. tostring(err) end
    if upper(sub(line, 1, 5)) ~= "INFO " then return nil, "the server is not NATS: " .. protocol_error(line) end
    max_payload = tonumber(match(line, '"max_payload"%s*:%s*(%d+)')) or max_payload
    if not match(line, '"headers"%s*:%s*true') then
        return nil, "the server does not support headers (nats-server 2.2 or later is needed)"
    end
    s:write(fmt('CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
        .. '"lang":"lua","version":"lunet","protocol":1,"name":"lunet-%s"}\r\nPING\r\n', node))
    while true do
        line, err = s:readline(MAX_CONTROL_LINE)
        if not line then return nil, "no answer to CONNECT: " .. tostring(err) end
        local op = upper(match(line, "^(%S+)") or "")
        if op == "PONG" then break end
        if op == "-ERR" then return nil, "NATS refused CONNECT: " .. sub(line, 1, 256) end
        if op ~= "+OK" and op ~= "INFO" and op ~= "PING" then return nil, protocol_error(line) end
    end
    s:settimeout(0)
    local lines, sids = {}, {}
    for sid in pairs(sub_lines) do sids[#sids + 1] = sid end
    table.sort(sids)
    for i, sid in ipairs(sids) do lines[i] = sub_lines[sid] end
    if #lines > 0 then s:write(table.concat(lines)) end
    return true
end

local function connect()
    local s, err = lunet.connect(address, HANDSHAKE_MS)
    if not s then return nil, "cannot connect to " .. url .. ": " .. tostring(err) end
    local ok, why = handshake(s)
    if not ok then
        s:close()
        return nil, why
    end
    return s
end

local function lost(s, why)
    if sock == s then sock = nil end
    set_connected(false)
    s:close()
    log("warn", fmt("cluster: lost NATS at %s (%s); reconnecting", url, why))
    fail_pending("lunet.call: the connection to NATS was lost")
    while pong_head <= pong_tail do wake_pong() end
end

local function attached(s)
    sock, own_seen = s, now()
    set_connected(true)
end

-- Step 5: reads while connected, reconnects when not, forever.
local function keep_connected(s)
    while true do
        lost(s, read_loop(s))
        local delay = RECONNECT_FIRST_MS
        while true do
            lunet.sleep(delay)
            local fresh, err = connect()
            if fresh then
                s = fresh
                break
            end
            log("debug", "cluster: " .. err)
            delay = math.min(delay * 2, RECONNECT_MAX_MS)
        end
        attached(s)
        log("info", "cluster: reconnected to NATS at " .. url)
    end
end

---------------------------------------------------------------- operations

local ops = {}

local function require_connection(what)
    if not sock then error(what .. ": " .. UNREACHABLE, 0) end
end

function ops.register(_, name, handle)
    check_name("lunet.cluster.register", name)
    if leaving then
        error(fmt("lunet.cluster.register: node '%s' is leaving the cluster (draining)", node), 0)
    end
    require_connection("lunet.cluster.register")
    local function taken()
        local held = names[name]
        if held then
            error(fmt("lunet.cluster.register: '%s' is taken (by :%d of this node)", name, held.handle), 0)
        end
    end
    taken()
    local holder = probe("lunet.n." .. name .. ".q")
    if holder then
        error(fmt("lunet.cluster.register: '%s' is taken (by node '%s')", name, holder), 0)
    end
    taken() -- a session of this node may have taken it meanwhile
    local held = { handle = handle, sid = subscribe("lunet.n." .. name .. ".*", serve_name(name)) }
    names[name] = held
    flush() -- the subscription is in place
    -- Two nodes may have probed at once and both found it free: each
    -- claims it; the serve_name handler of the other settles who keeps it.
    local objector = claim("lunet.n." .. name .. ".k")
    if objector or held.lost then
        if names[name] == held then release("'" .. name .. "'") end
        error(fmt("lunet.cluster.register: '%s' is taken (by node '%s')", name, objector or held.lost), 0)
    end
    held.settled = true
    return true
end

function ops.query(_, name)
    check_name("lunet.cluster.query", name)
    if names[name] then return node end
    require_connection("lunet.cluster.query")
    return probe("lunet.n." .. name .. ".q")
end

function ops.nodes()
    local list = { node }
    for name in pairs(nodes) do list[#list + 1] = name end
    table.sort(list)
    return list
end

function ops.node()
    return node
end

-- A remote reference's or a group's call: answered by the read path
-- when the reply comes (forward.rs), or failed when the node that took
-- it goes down or the connection is lost. A group's call learns its node
-- from the node that takes it.
ops.call = function(_, subject, target_node, encoded)
    local service, token = take_call()
    local reply_to = forward(service, token, subject, target_node)
    if target_node ~= "" then await_node(target_node) end
    local ok, err = publish(subject, reply_to, encoded)
    if not ok then fail_forwarded_one(reply_to, "lunet.call: " .. err) end
end

ops.send = function(_, subject, _, encoded)
    local ok, err = publish(subject, nil, encoded)
    if not ok then log("warn", fmt("cluster: a send on %s was dropped: %s", subject, err)) end
end

-- A service of this node joined `group` (mod.rs: note_group).
ops.span = function(_, group)
    if groups[group] or leaving then return end
    local handler = serve_group(group)
    groups[group] = {
        subscribe("lunet.g." .. group .. ".c", handler, "lunet.g." .. group),
        subscribe("lunet.g." .. group .. ".s", handler),
    }
end

---------------------------------------------------------------- modules

-- The meta-server: modules (name, version, code) in a JetStream stream,
-- each stored twice, under its version and as its name's latest; a
-- subject token is the hex of a name or a version ("latest" is not hex).
local MODULES = "LUNET_MODULES"
local store_module = calls.store_module

local function hex(text)
    return (text:gsub(".", function(c) return fmt("%02x", byte(c)) end))
end

local function module_subject(name, version)
    return "lunet.mod." .. hex(name) .. "." .. (version and hex(version) or "latest")
end

-- The description of a JetStream API error in `answer`, if it is one.
local function js_error(answer)
    if not answer:find('"error"', 1, true) then return nil end
    return match(answer, '"description"%s*:%s*"([^"]*)"') or answer
end

local NO_JETSTREAM = "JetStream is not enabled on the NATS server (start it with -js)"
local stream_ready = false
local function ensure_stream()
    if stream_ready then return end
    local config = fmt('{"name":"%s","subjects":["lunet.mod.>"],"storage":"file",'
        .. '"max_msgs_per_subject":1,"allow_direct":true}', MODULES)
    local status, answer = request("$JS.API.STREAM.CREATE." .. MODULES, config)
    if status == "503" then error(NO_JETSTREAM, 0) end
    local why = js_error(answer)
    -- 10058: the stream exists already.
    if why and not answer:find("10058", 1, true) then
        error("cannot create the module stream: " .. why, 0)
    end
    stream_ready = true
end

function ops.push(_, name, version, source)
    require_connection("lunet.cluster.push")
    ensure_stream()
    for _, subject in ipairs({ module_subject(name, version), module_subject(name) }) do
        local status, answer = request(subject, version .. "\n" .. source)
        if status == "503" then error(NO_JETSTREAM, 0) end
        local why = js_error(answer)
        if why then error(fmt("cannot store module %s %s: %s", name, version, why), 0) end
    end
    return true
end

-- The latest version of module `name` from the store, written where this
-- process finds modules it lacks (mod.rs: store_module); nil and why if
-- the store has none.
function ops.fetch(_, name)
    require_connection("fetching module " .. name)
    local query = fmt('{"last_by_subj":"%s"}', module_subject(name))
    local status, answer = request("$JS.API.DIRECT.GET." .. MODULES, query)
    if status == "503" then
        return nil, "the cluster's module store is empty or JetStream is off"
    elseif status then
        return nil, "it was not pushed to the cluster (lunet modules push)"
    end
    local version, source = match(answer, "^([^\n]*)\n(.*)$")
    if not version then error("module " .. name .. " is malformed in the store", 0) end
    store_module(name, source)
    log("info", fmt("cluster: fetched module %s %s", name, version))
    return version
end

lunet.dispatch(function(source, key, op, ...)
    if key ~= secret then
        error(fmt("cluster: refused a message from :%d: the cluster is reached through lunet.cluster"
            .. " and remote references only", source), 0)
    end
    -- Refusals are answers (`false, why`), not errors of this service.
    return pcall(ops[op], source, ...)
end)

---------------------------------------------------------------- start (step 1)

calls.define_events({ "cluster.nodeup", "cluster.nodedown" })
local first, err = connect()
if not first then error(err, 0) end
attached(first)
calls.forward_inbox(inbox .. "f")
subscribe(inbox .. "*", on_reply)
subscribe("lunet.hb", on_heartbeat)
lunet.fork(keep_connected, first)
if probe("lunet.node." .. node) then
    error(fmt("node name '%s' is taken by a live node", node), 0)
end
local node_sid = subscribe("lunet.node." .. node, function(_, reply)
    if reply then publish(reply, nil, "n" .. instance) end
end)
subscribe("lunet.bye", on_bye)
lunet.fork(heartbeats)

-- Step 6: what the node held is given up at once; calls already being
-- served here are answered.
lunet.on_shutdown(function()
    if leaving then return end
    leaving = true
    for name, held in pairs(names) do
        names[name] = nil
        unsubscribe(held.sid)
    end
    for group, sids in pairs(groups) do
        groups[group] = nil
        for _, sid in ipairs(sids) do unsubscribe(sid) end
    end
    unsubscribe(node_sid)
    publish("lunet.bye", nil, node .. " " .. instance)
    log("info", fmt("cluster: node '%s' leaves the cluster (draining)", node))
end)
log("info", fmt("cluster: node '%s' joined %s", node, url))
