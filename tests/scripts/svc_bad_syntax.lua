-- Deliberately broken: spawning this must fail at the spawner.
local lunet = require "lunet"
lunet.dispatch(function(source, ...)
    return ... +
end)
