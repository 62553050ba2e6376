-- bench/model.sh: the third module of the memory row: a queue of jobs
-- that callers push and take.
local M = lunet.module { name = "bench.c", version = "1" }
M.event("pushed")
QUEUE, HEAD, TAIL = {}, 1, 0
M.sub("push", function(ctx, job)
    TAIL = TAIL + 1
    QUEUE[TAIL] = job
    lunet.fire("bench.c.pushed", TAIL - HEAD + 1)
    return TAIL - HEAD + 1
end)
M.sub("take", function(ctx)
    if HEAD > TAIL then return nil end
    local job = QUEUE[HEAD]
    QUEUE[HEAD], HEAD = nil, HEAD + 1
    return job
end)
return M
