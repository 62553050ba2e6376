-- bench/todo_client.lua: the todo leg's client (bench/run.sh todo), on
-- load.http: requests built once, responses parsed in Rust.
--
--   lunet load --script bench/todo_client.lua --set op=get -c 50 ADDR   # GET /todos/:id, ids 1..100
--   lunet load --script bench/todo_client.lua --set op=post -c 50 ADDR  # POST /todos
local lunet = require "lunet"
local load = require "load"

local op = lunet.getenv("op", "get")
local requests = {}
if op == "post" then
    requests[1] = load.http.request({
        method = "POST", path = "/todos",
        headers = { ["Content-Type"] = "application/json" },
        body = '{"title": "benchmark the todo service", "done": false}',
    })
else
    for id = 1, 100 do
        requests[id] = load.http.request({ method = "GET", path = "/todos/" .. id })
    end
end
local count = #requests
local random = math.random

load.run(function(sock)
    while load.running() do
        local res = load.request(function()
            sock:write(requests[random(count)])
            return load.http.read(sock)
        end)
        if not res then return end
    end
end)
