-- Valid Lua that fails while loading.
local lunet = require "lunet"
error("load failure on purpose")
