-- The restricted environment of a spawned service (unless trusted=true):
-- no io, no debug, no process control, no files, text-only load, no __gc
-- finalizers. What lunet's own bindings may reach is the business of the
-- capabilities (lua-api/src/caps.rs), checked in Rust. The libraries the
-- sandbox leaves out, and its `os`, are the business of
-- prelude/libraries.lua (they are opened on first use). Run after
-- prelude.lua with `core`, `lunet` and `shared()` (what makes and
-- returns prelude/internals.lua's table).
local core, lunet, shared = ...
local raw_load, error, tostring = load, error, tostring
local raw_setmetatable, rawget, type = setmetatable, rawget, type
local loaded = core.loaded()

dofile = nil
loadfile = nil
string.dump = nil

function load(chunk, name, mode, env)
    if mode ~= nil and mode ~= "t" then
        error("load: binary chunks are not allowed in a sandboxed service", 2)
    end
    return raw_load(chunk, name, "t", env)
end

function require(name)
    if name == "lunet" then return lunet end
    shared().libraries()
    local module = loaded[name]
    if module == nil then
        error("module '" .. tostring(name) .. "' is not available in a sandboxed service", 2)
    end
    return module
end

-- Lua runs finalizers with hooks off: a loop in one could never be
-- interrupted by the monitor. (A table marked without __gc stays unmarked
-- even if the field is added to its metatable later.)
function setmetatable(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("setmetatable: __gc finalizers are not allowed in a sandboxed service", 2)
    end
    return raw_setmetatable(t, mt)
end

getmetatable("").__metatable = false
