-- lunet run: an error in the main chunk ends the process with status 1.
local lunet = require "lunet"
lunet.sleep(1)
error("startup failed on purpose")
