-- The `coroutine` scripts see (part of prelude.lua, made on the first use
-- of the global): coroutines a script creates itself, in which a lunet
-- call must still reach the scheduler (as OpenResty and skynet.coroutine
-- arrange). The wrapped resume passes lunet's yields up through every user
-- coroutine to the session and feeds the answer back down; the user's own
-- yields reach the user as usual. `switch` tells the monitor which
-- coroutine runs, so that an interrupt lands in it
-- (lua-api/src/interrupt.rs). Returns the table.

local core, lunet, internals = ...
local yield, lunet_yield = internals.yield, internals.lunet_yield
local library = core.open_library("coroutine", internals.sandboxed)
local co_create, co_resume, co_status, co_close = library.create, library.resume, library.status, library.close
local error = error

local switch = core.switch
local function switched_back(...)
    switch()
    return ...
end

local function resume_down(co, ...)
    lunet_yield[1] = false
    switch(co)
    return switched_back(co_resume(co, ...))
end

local function pass_up(co, ok, ...)
    if ok and lunet_yield[1] and co_status(co) == "suspended" then
        return pass_up(co, resume_down(co, yield(...)))
    end
    return ok, ...
end

local user_coroutine = {}
for name, fn in pairs(library) do user_coroutine[name] = fn end

function user_coroutine.resume(co, ...)
    return pass_up(co, resume_down(co, ...))
end

-- Closing runs the coroutine's pending __close handlers inside it.
if co_close then
    function user_coroutine.close(co)
        switch(co)
        return switched_back(co_close(co))
    end
end

local function wrap_result(co, ok, ...)
    if not ok then
        local message = ...
        if co_close then co_close(co) end
        error(message, 0)
    end
    return ...
end

function user_coroutine.wrap(fn)
    local co = co_create(fn)
    return function(...)
        return wrap_result(co, user_coroutine.resume(co, ...))
    end
end

core.loaded().coroutine = user_coroutine
return user_coroutine
