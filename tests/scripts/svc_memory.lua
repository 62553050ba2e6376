-- lunet run: spawn{memory=N}: the allocation that crosses the limit raises
-- in that session; the service lives on. Prints key=value lines for
-- tests/services.rs.
local lunet = require "lunet"

local function show(key, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    print(key .. "=" .. table.concat(parts, " "):gsub("\n", "\\n"))
end

local limited = lunet.spawn { script = "svc_worker.lua", memory = 1024 * 1024, args = { "limited" } }
local free = lunet.spawn { script = "svc_worker.lua", args = { "free" } }

show("small_alloc", pcall(lunet.call, limited, "alloc", 64 * 1024))
show("big_alloc", pcall(lunet.call, limited, "alloc", 8 * 1024 * 1024))
show("after_big_alloc", pcall(lunet.call, limited, "ping"))
show("small_alloc_again", pcall(lunet.call, limited, "alloc", 64 * 1024))
show("unlimited_big_alloc", pcall(lunet.call, free, "alloc", 8 * 1024 * 1024))
-- A message bigger than the limit: decoding it fails inside the target.
show("big_message", pcall(lunet.call, limited, "echo", string.rep("m", 4 * 1024 * 1024)))
show("after_big_message", pcall(lunet.call, limited, "ping"))
