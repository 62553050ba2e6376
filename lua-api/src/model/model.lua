-- The runtime model, Lua half (lua-api/src/model/mod.rs has the protocol):
-- lunet.module and the module loader, lunet.sub, events, groups, and the
-- state and storage interfaces. Loaded once per VM, when a runtime is
-- built or when a service first uses a model call (the prelude's __index
-- on `lunet`). `core` is the table of Rust functions the prelude got,
-- `lunet` the module table, `prelude` the prelude's helpers: its yield and
-- the wrappers of answers and lane calls.

local core, lunet, prelude = ...
local G = _G
local yield, cannot_wait, answer = prelude.yield, prelude.cannot_wait, prelude.answer
local lane, lane_result, check_string = prelude.lane, prelude.lane_result, prelude.check_string
local OP_CALL, OP_LANE, LANE = core.OP.CALL, core.OP.LANE, core.LANE
local setmetatable, error, type, ipairs, tostring, xpcall =
    setmetatable, error, type, ipairs, tostring, xpcall
local concat = table.concat
local isyieldable = coroutine.isyieldable

---------------------------------------------------------------- modules

local loaded = {}   -- name -> M: the modules this runtime runs
local loading       -- the frame of the module file that runs now

-- Globals of a module's environment that are not its own fall back to the
-- runtime's global table.
local ENV = { __index = G }

local function chain_text(chain, last)
    local parts = {}
    for i = 1, #chain do parts[i] = chain[i] end
    parts[#parts + 1] = last
    return concat(parts, " -> ")
end

-- `require` inside a module: the modules it declared in depends; other
-- modules are refused (a sandboxed runtime reaches only what its modules
-- declare); anything else goes to the runtime's own require.
local function require_in(frame)
    return function(name)
        if type(name) == "string" then
            if frame.depends[name] then return loaded[name] end
            if loaded[name] ~= nil or core.module_exists(name) then
                error("require '" .. name .. "': module " .. frame.name
                    .. " does not declare it: add it to depends in its lunet.module{...}", 2)
            end
        end
        return G.require(name)
    end
end

local function new_frame(name, chain)
    local frame = { name = name, chain = chain, depends = {} }
    frame.env = setmetatable({ lunet = lunet, require = require_in(frame) }, ENV)
    return frame
end

-- In a cluster, a module this node lacks comes from the cluster's module
-- store (cluster/node.lua: fetch): true, or false and why not.
local function fetch(name)
    local token = core.module_fetch(name)
    if not token then return false end
    -- (answered, ran, version) or (answered, ran, nil, why not); not
    -- answered or not ran: the second or third value says why.
    local answered, ran, version, why = yield(OP_CALL, token)
    if not answered then return false, tostring(ran) end
    if not ran then return false, tostring(version) end
    if version then return true end
    return false, tostring(why)
end

-- Runs module `frame.name`'s file; `lunet.module` in it stages the module.
local function run_file(frame)
    local chunk, err = core.module_chunk(frame.name, frame.env)
    if not chunk and err:find(" not found: ", 1, true) then
        local fetched, why = fetch(frame.name)
        if fetched then
            chunk, err = core.module_chunk(frame.name, frame.env)
        elseif why then
            err = err .. "; not in the cluster either: " .. why
        end
    end
    if not chunk then
        if #frame.chain > 0 then
            err = err .. " (needed by " .. chain_text(frame.chain, frame.name) .. ")"
        end
        error(err, 0)
    end
    local outer = loading
    loading = frame
    chunk()
    loading = outer
    if frame.M == nil then
        error("module " .. frame.name .. ": its file did not call lunet.module{name = \""
            .. frame.name .. "\", version = ...}", 0)
    end
end

-- Loads module `name` and its dependencies into this runtime, once;
-- `chain` lists the modules that need it, outermost first.
local function load_module(name, chain)
    local M = loaded[name]
    if M ~= nil then return M end
    for i = 1, #chain do
        if chain[i] == name then
            error("cyclic dependency: " .. chain_text(chain, name), 0)
        end
    end
    local frame = new_frame(name, chain)
    run_file(frame)
    loaded[name] = frame.M
    core.module_commit(name)
    return frame.M
end

function lunet.module(manifest)
    local frame = loading
    if frame == nil or frame.M ~= nil then
        error("lunet.module: call it once, at the top of a module file "
            .. "(a runtime loads its modules: lunet.spawn{modules = {...}})", 2)
    end
    if type(manifest) ~= "table" then
        error("lunet.module: expected {name = ..., version = ..., depends = {...}}", 2)
    end
    local name, version, depends = manifest.name, manifest.version, manifest.depends
    if name ~= frame.name then
        error("lunet.module: the file of module " .. frame.name .. " declares name = "
            .. tostring(name), 2)
    end
    if type(version) ~= "string" then
        error("lunet.module: version must be a string like \"1.0\", got " .. type(version), 2)
    end
    if depends ~= nil and type(depends) ~= "table" then
        error("lunet.module: depends must be a list of module names", 2)
    end
    core.module_declare(name, version)
    local M = { name = name, version = version }
    function M.sub(sub_name, fn)
        return core.sub_register(name, sub_name, fn)
    end
    function M.event(event_name)
        return core.event_define(name, event_name)
    end
    local prefix = name .. "."
    function M.fire(event_name, ...)
        if type(event_name) ~= "string" then
            error("M.fire: the event must be a string, got " .. type(event_name), 2)
        end
        return core.fire("M.fire", prefix .. event_name, ...)
    end
    frame.M = M
    if depends then
        local chain = {}
        for i = 1, #frame.chain do chain[i] = frame.chain[i] end
        chain[#chain + 1] = name
        for _, dep in ipairs(depends) do
            if type(dep) ~= "string" then
                error("lunet.module: depends must be a list of module names", 2)
            end
            frame.depends[dep] = true
            load_module(dep, chain)
        end
    end
    return M
end

-- The console's `reload MODULE`: the module's new code, staged and swapped
-- in only if it loads; otherwise the old code runs on.
local function reload_module(name)
    if loaded[name] == nil then
        error("this runtime does not run module " .. tostring(name), 0)
    end
    core.module_reload_begin(name)
    local frame = new_frame(name, {})
    local outer = loading
    local ok, err = xpcall(run_file, core.traceback, frame)
    loading = outer
    if not ok then
        core.module_unstage(name)
        error(err, 0)
    end
    loaded[name] = frame.M
    return core.module_commit(name)
end

---------------------------------------------------------------- Subs

function lunet.sub(module, name, version)
    check_string(module, "lunet.sub: the module")
    check_string(name, "lunet.sub: the Sub's name")
    if version ~= nil then check_string(version, "lunet.sub: the version") end
    return core.sub_ref(module, name, version)
end

-- What a Sub gets as its first argument: the caller's handle, and the
-- runtime's state and storage when declared (raising otherwise).
local CTX = {
    __index = function(_, key)
        if key == "state" then return lunet.state() end
        if key == "storage" then return lunet.storage() end
    end,
}

local function run_sub(fn, source, ...)
    return fn(setmetatable({ source = source }, CTX), ...)
end

---------------------------------------------------------------- events

function lunet.fire(event, ...)
    return core.fire("lunet.fire", event, ...)
end

-- lunet.attach(event, fn): in this runtime. lunet.attach(h, event, fn):
-- from outside ("black box"); yields until h has accepted it.
function lunet.attach(target, event, fn)
    if type(event) == "function" and fn == nil then
        -- The cluster's events are the cluster service's (cluster/cluster.lua).
        if type(target) == "string" and target:find("^cluster%.") then
            return lunet.cluster.attach(target, event)
        end
        return core.attach_local(target, event)
    end
    if type(fn) ~= "function" then
        error("lunet.attach: expected (event, fn) or (handle, event, fn)", 2)
    end
    if not isyieldable() then cannot_wait("lunet.attach") end
    local token, err, id = core.attach_remote(target, event, fn)
    if not token then error(err, 2) end
    local ok, why = yield(OP_CALL, token)
    if not ok then
        core.detach(id)
        error(why, 2)
    end
    return true
end

---------------------------------------------------------------- groups

local Group = {}
Group.__index = Group
Group.__name = "lunet.group"

function Group.__tostring(self)
    return "lunet.group(" .. self.name .. ")"
end

function lunet.group(name)
    check_string(name, "lunet.group: the name")
    return setmetatable({ name = name }, Group)
end

function Group:join(handle)
    return core.group_join(self.name, handle)
end

function Group:leave(handle)
    return core.group_leave(self.name, handle)
end

function Group:members()
    return core.group_members(self.name)
end

-- In a cluster (and with its capability) a group spans the nodes: sends
-- and calls go through the cluster service (cluster/node.lua).
local cluster_spans, cluster_group = core.cluster_spans, core.cluster_group

function Group:send(...)
    if cluster_spans() then
        local _, err = cluster_group(self.name, false, ...)
        if err then error(err, 2) end
        return true
    end
    return core.group_send(self.name, ...)
end

function Group:call(...)
    if not isyieldable() then cannot_wait("g:call") end
    local token, err
    if cluster_spans() then
        token, err = cluster_group(self.name, true, ...)
    else
        token, err = core.group_call(self.name, ...)
    end
    if not token then error(err, 2) end
    return answer(yield(OP_CALL, token))
end

function Group:attach(event, fn)
    if type(fn) ~= "function" then error("g:attach: expected (event, fn)", 2) end
    return core.group_attach(self.name, event, fn)
end

---------------------------------------------------------------- state

local State = {}
State.__index = State
State.__name = "lunet.state"

local state_object, save_queue

function lunet.state()
    if state_object then return state_object end
    core.state_check()
    state_object = setmetatable({}, State)
    save_queue = lunet.queue()
    return state_object
end

function State:get(key)
    check_string(key, "state:get: the key")
    return core.state_get(key)
end

function State:set(key, value)
    check_string(key, "state:set: the key")
    return core.state_set(key, value)
end

function State:query(prefix)
    if prefix ~= nil then check_string(prefix, "state:query: the prefix") end
    return core.state_query(prefix)
end

local function save()
    local batch = core.state_batch()
    if batch == nil then return true end
    local ok, err = lane_result(yield(OP_LANE, LANE.STATE_SAVE, batch))
    core.state_saved(ok == true)
    if not ok then return nil, err end
    return true
end

-- Saves one at a time: a later save never lands before an earlier one.
function State:save()
    if not isyieldable() then cannot_wait("state:save") end
    return save_queue(save)
end

---------------------------------------------------------------- storage

local Storage = {}
Storage.__index = Storage
Storage.__name = "lunet.storage"

local storage_object

function lunet.storage()
    if storage_object then return storage_object end
    storage_object = setmetatable({ handle = core.storage_handle() }, Storage)
    return storage_object
end

function Storage:exec(sql, ...)
    check_string(sql, "storage:exec: sql")
    return lane_result(lane("storage:exec", LANE.STORAGE_EXEC, self.handle, sql, ...))
end

function Storage:query(sql, ...)
    check_string(sql, "storage:query: sql")
    return lane_result(lane("storage:query", LANE.STORAGE_QUERY, self.handle, sql, ...))
end

function Storage:atomic(statements)
    if type(statements) ~= "table" then
        error("storage:atomic: expected a list of {sql, ...} statements", 2)
    end
    return lane_result(lane("storage:atomic", LANE.STORAGE_ATOMIC, self.handle, statements))
end

function Storage:__tostring()
    return "lunet.storage"
end

---------------------------------------------------------------- start

-- The main chunk of a runtime: its saved state, its modules, its script.
local function start_runtime(main, ...)
    local loader = core.state_loader()
    if loader then
        local rows, err = lane_result(yield(OP_LANE, LANE.STATE_LOAD, loader))
        if rows == nil then
            error("lunet.state: cannot read the saved state: " .. tostring(err), 0)
        end
        core.state_restore(rows)
    end
    for _, name in ipairs(core.runtime_modules()) do
        load_module(name, {})
    end
    -- Subs and attachments that came meanwhile run now (model step 1).
    core.runtime_ready()
    return main(...)
end

return run_sub, start_runtime, reload_module
