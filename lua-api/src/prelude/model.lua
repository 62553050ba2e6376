-- lunet.sub, lunet.module, lunet.fire, lunet.attach, lunet.group,
-- lunet.state and lunet.storage: the runtime model (model/model.lua and
-- lua-api/src/model/), loaded on first use of one (a runtime loads it
-- when it is built). It shares the actor and lane parts' helpers.

local core, lunet, internals = ...
local _ = lunet.call, lunet.lane -- loads those parts: internals.answer, .lane, ...
core.load_model(core, lunet, {
    yield = internals.yield, cannot_wait = internals.cannot_wait, answer = internals.answer,
    lane = internals.lane, lane_result = internals.lane_result, check_string = internals.check_string,
})
