-- bench/apps/sort_app.lua: a handler that spends its time in Lua (bench/apps/sort.lua), for the
-- CPU guard's cost: scgi-lua bench/apps/sort_app.lua [--cpu-limit 0]
local sort = require "sort"

return function(headers, client)
  local body = sort.render()
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ", #body,
               "\r\n\r\n", body)
end
