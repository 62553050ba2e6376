-- Requires a module it did not declare in depends.
local M = lunet.module { name = "t.undeclared", version = "1", depends = { "t.util" } }
local util = require "t.util"
local echo = require "t.echo"
return M
