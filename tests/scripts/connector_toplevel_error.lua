-- A client script that fails at its top level.
local load = require "load"
error("no config for this client")
