-- bench/apps/page_app.lua: the Lua-heavy page (bench/apps/page.lua) as a scgi-lua handler.
local page = require "page"

return function(headers, client)
  local html = page.render()
  client:write("Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ",
               #html, "\r\n\r\n", html)
end
