-- The standard libraries of a VM, opened on first use (part of
-- prelude.lua; lua-api/src/globals.rs has why). Returns `library(name)`:
-- the value of global `name` when it is one of them (`nil` otherwise),
-- after opening it; `library("*")` opens every one not opened yet and
-- takes lunet's metatable off the globals table.
--
-- A sandboxed service gets no io, debug or package, and os has only time,
-- clock, date and difftime (sandbox.lua has the rest of the sandbox).

local core, lunet, internals = ...
local open_library, sandboxed, load_part = core.open_library, internals.sandboxed, internals.load_part
local loaded = core.loaded()
local rawget, rawset, pairs, setmetatable = rawget, rawset, pairs, setmetatable

-- The globals this opens (`coroutine` is lunet's wrapper of the library).
local LIBRARIES = {
    coroutine = true, table = true, math = true, utf8 = true, os = true,
    io = true, package = true, debug = true,
}

local library

-- `package.loaded` finds the libraries not opened yet, as `require` looks
-- there first.
local function loaded_index(_, name)
    if LIBRARIES[name] then return _G[name] end
end

function library(name)
    if name == "*" then
        for each in pairs(LIBRARIES) do
            if rawget(_G, each) == nil then
                local value = library(each)
                if value ~= nil then rawset(_G, each, value) end
            end
        end
        setmetatable(_G, nil)
        return nil
    end
    if name == "require" then
        if rawget(_G, "package") == nil then library("package") end
        return rawget(_G, "require")
    end
    if not LIBRARIES[name] then return nil end
    if name == "coroutine" then return load_part("coroutine") end
    local value = open_library(name, sandboxed)
    if value == nil then return nil end
    if name == "os" and sandboxed then
        value = { time = value.time, clock = value.clock, date = value.date, difftime = value.difftime }
        loaded.os = value
    elseif name == "package" then
        -- Opening it made `require` a global.
        rawset(_G, "package", value)
        core.library_paths()
    end
    return value
end

loaded.lunet = lunet
setmetatable(loaded, { __index = loaded_index })
return library
