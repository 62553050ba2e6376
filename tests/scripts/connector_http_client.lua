-- tests/connector.rs: a scripted HTTP client on load.http. With the
-- default request (--method, --path, --header, --body) it checks the echo
-- of /body; `path=` makes it GET that path instead, counting any status.
local lunet = require "lunet"
local load = require "load"

local path = lunet.getenv("path")
local request = path and load.http.request({ method = "GET", path = path }) or load.http.request()
local expect = lunet.getenv("expect")

load.run(function(sock)
    while load.running() do
        local res, err = load.request(function()
            sock:write(request)
            local res, err = load.http.read(sock)
            if not res then return nil, err end
            if expect and res.body ~= expect then return nil, "unexpected body " .. res.body end
            return res
        end)
        if not res then return end
    end
end)
