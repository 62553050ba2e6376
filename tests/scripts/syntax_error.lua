-- Deliberately not valid Lua.
local lunet = require "lunet"
local x = = 1
