-- lunet run: a service with a dispatch function lives until lunet.exit();
-- then the process exits 0 although another service is still alive.
local lunet = require "lunet"

lunet.dispatch(function() end)
lunet.spawn("svc_worker.lua", "left behind")
lunet.timeout(20, function()
    print("exiting " .. lunet.getenv("word", "?"))
    lunet.exit()
    print("not reached")
end)
