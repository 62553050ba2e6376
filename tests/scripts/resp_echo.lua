-- A RESP server for tests of sock:readresp: every command comes back as an
-- array of its words; a failed read is answered "-<err>" and closes, except
-- a timeout (settimeout=MS), answered "+timeout", after which reading goes
-- on. max_bulk=N is passed to readresp; cert=FILE key=FILE serve TLS.
local lunet = require "lunet"

local tls = lunet.getenv("cert") and { cert = lunet.getenv("cert"), key = lunet.getenv("key") }

local max_bulk = tonumber(lunet.getenv("max_bulk", ""))
local timeout = tonumber(lunet.getenv("settimeout", ""))

lunet.listen(lunet.getenv("listen", "127.0.0.1:0"), { tls = tls }, function(sock)
    if timeout then sock:settimeout(timeout) end
    while true do
        local command, err = sock:readresp(max_bulk)
        if not command then
            if err == "timeout" then
                sock:write("+timeout\r\n")
            else
                sock:write("-", err, "\r\n")
                return
            end
        else
            local out = { "*", #command, "\r\n" }
            for _, word in ipairs(command) do
                out[#out + 1] = "$" .. #word .. "\r\n" .. word .. "\r\n"
            end
            sock:write(table.concat(out))
        end
    end
end)
