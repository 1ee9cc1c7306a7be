-- bench/uwsgi/hello.lua: the hello app as a WSAPI application, for uWSGI's Lua plugin
-- (uwsgi --plugins lua --lua bench/uwsgi/hello.lua). The plugin calls the function with the
-- WSAPI environment and sends the status, the headers, then each string the iterator yields:
-- the same 12-byte body and headers as examples/hello.lua.
local headers = { ["Content-Type"] = "text/plain", ["Content-Length"] = "12" }

return function(env)
  return 200, headers, coroutine.wrap(function() coroutine.yield("Hello world\n") end)
end
