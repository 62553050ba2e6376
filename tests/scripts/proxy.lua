-- Two listeners in one script: a backend that answers "backend:<line>",
-- and a front that relays each line to this host's backend through
-- lunet.connect and answers "proxy:<backend answer>".
local lunet = require "lunet"

local backend = lunet.listen("127.0.0.1:0", function(sock)
    while true do
        local line = sock:readline()
        if not line then
            return
        end
        sock:write("backend:", line, "\n")
    end
end)

lunet.listen(lunet.getenv("listen"), function(sock)
    local upstream, err = lunet.connect(backend, 2000)
    if not upstream then
        sock:write("connect failed: ", tostring(err), "\n")
        return
    end
    while true do
        local line = sock:readline()
        if not line then
            break
        end
        upstream:write(line, "\n")
        local answer, upstream_err = upstream:readline()
        if not answer then
            sock:write("upstream failed: ", upstream_err, "\n")
            break
        end
        sock:write("proxy:", answer, "\n")
    end
    upstream:close()
end)
