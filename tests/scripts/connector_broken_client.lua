-- A client script whose handler raises: `lunet load` must stop and name it.
local load = require "load"

load.run(function(sock)
    sock:write("hello\n")
    sock:readline()
    local missing = nil
    return missing.field   -- attempt to index a nil value
end)
