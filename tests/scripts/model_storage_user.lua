-- A plain script spawned with storage (tests/model.rs).
local lunet = require "lunet"
local db = lunet.storage()
assert(db:exec("create table if not exists t (x integer)"))
assert(db:exec("insert into t (x) values (1)"))
lunet.dispatch(function(_, command)
    if command == "count" then
        return db:query("select count(*) as n from t")[1].n
    end
end)
