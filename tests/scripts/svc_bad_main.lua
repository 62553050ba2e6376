-- A main chunk that raises: spawning this must fail at the spawner.
local lunet = require "lunet"
error("the main chunk refused to start")
