-- The JSON benchmark documents and loop, shared by lunet.json (run by
-- benches/json.rs) and lua-cjson (run by plain lua5.4):
--
--   lua5.4 lua-api/benches/json_bench.lua      -- lua-cjson, the anchor
--
-- Prints "<row> <operations per second>" lines, then the document sizes.
local json = ...
if json == nil then json = require("cjson") end
local clock = os.clock

-- ~800 bytes: an API answer with nested objects, arrays, strings, integers,
-- a few floats and booleans.
local function document(i)
    return {
        id = 1000 + i,
        name = "lunet benchmark document",
        active = true,
        score = 98.5,
        ratio = 0.25,
        tags = { "network", "lua", "rust", "reactor", "coroutine", "json" },
        owner = {
            login = "someone",
            id = 42,
            url = "https://example.com/users/someone",
            site_admin = false,
        },
        stats = { views = 123456, likes = 789, forks = 12, issues = 3 },
        history = {
            { at = 1700000000, event = "created", by = "someone" },
            { at = 1700003600, event = "edited", by = "someone else" },
            { at = 1700007200, event = "starred", by = "a third user" },
        },
        description = "A document of about eight hundred bytes that looks like what an HTTP API "
            .. "returns: \"quoted\" words, a tab\tand a newline\n, and some UTF-8: café, naïve, ✓.",
        homepage = "https://example.com/lunet/benchmarks/json?size=800&format=pretty",
        license = { key = "mit", name = "MIT License" },
    }
end

local small = document(1)
local large = {}
for i = 1, 125 do large[i] = document(i) end

local small_text = json.encode(small)
local large_text = json.encode(large)

local function rate(fn, arg, batch)
    for _ = 1, batch do fn(arg) end -- warm up
    local n, start, elapsed = 0, clock(), 0
    repeat
        for _ = 1, batch do fn(arg) end
        n = n + batch
        elapsed = clock() - start
    until elapsed >= 1.0
    return n / elapsed
end

print(string.format("encode-small %.0f", rate(json.encode, small, 1000)))
print(string.format("decode-small %.0f", rate(json.decode, small_text, 1000)))
print(string.format("encode-large %.0f", rate(json.encode, large, 10)))
print(string.format("decode-large %.0f", rate(json.decode, large_text, 10)))
print(string.format("bytes-small %d", #small_text))
print(string.format("bytes-large %d", #large_text))
