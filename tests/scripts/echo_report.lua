-- Line echo that tells the client why a read failed ("ERR too long", ...)
-- instead of closing silently, so tests can tell the errors apart.
local lunet = require "lunet"

lunet.listen(lunet.getenv("listen"), function(sock)
    while true do
        local line, err = sock:readline()
        if not line then
            if err ~= "closed" and err ~= "reset" then
                sock:write("ERR ", err, "\n")
            end
            return
        end
        sock:write(line, "\n")
    end
end)
