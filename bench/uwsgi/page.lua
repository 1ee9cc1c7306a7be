-- bench/uwsgi/page.lua: the Lua-heavy page of bench/lua.sh (bench/apps/page.lua) as a WSAPI
-- application for uWSGI's Lua plugin: uwsgi --ini bench/uwsgi/hello.ini --lua bench/uwsgi/page.lua
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../apps/?.lua;" .. package.path
local page = require "page"

return function(env)
  local html = page.render()
  return 200, { ["Content-Type"] = "text/html; charset=utf-8", ["Content-Length"] = tostring(#html) },
    coroutine.wrap(function() coroutine.yield(html) end)
end
