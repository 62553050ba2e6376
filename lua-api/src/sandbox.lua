-- The restricted environment of a spawned service (unless trusted=true):
-- no io, no debug, no process control, no files, text-only load.
local raw_load, error, tostring = load, error, tostring
local loaded = package.loaded

os = {
    time = os.time, clock = os.clock, date = os.date, difftime = os.difftime,
}
io = nil
debug = nil
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
    local module = loaded[name]
    if module == nil then
        error("module '" .. tostring(name) .. "' is not available in a sandboxed service", 2)
    end
    return module
end

package = nil
getmetatable("").__metatable = false
loaded.io, loaded.debug, loaded.os, loaded.package = nil, nil, os, nil
