-- A service without lunet.dispatch that stays alive for a while (a forked
-- session keeps it from being idle forever).
local lunet = require "lunet"
lunet.fork(function() lunet.sleep(2000) end)
