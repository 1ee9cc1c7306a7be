-- spec/apps/hostile.lua: handlers that misbehave as real ones do: error objects with odd
-- metamethods, to-be-closed variables that never return, loops in coroutines they made, server
-- calls where none belong. Each route is named by what it does.
local scgi = require "scgi"
local R = require "router"
local ok = R.ok

if os.getenv("HOSTILE_SERVE_AT_LOAD") then scgi.handle_requests(function() end) end

local routes = {}

routes["/hello"] = function(_, client) ok(client, "Hello world\n") end

routes["/tostring-raises"] = function()
  error(setmetatable({ msg = "x" }, { __tostring = function(e) return "E" .. e.code end }))
end

routes["/tostring-number"] = function()
  error(setmetatable({}, { __tostring = function() return 42 end }))
end

routes["/tostring-yields"] = function()
  error(setmetatable({}, { __tostring = function() coroutine.yield() end }))
end

routes["/tostring-loops"] = function()
  error(setmetatable({}, { __tostring = function() while true do end end }))
end

routes["/close-loops"] = function()
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  while true do end
end

routes["/close-loops-after-error"] = function()
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  error("boom before the close")
end

routes["/wrap-loop"] = function(_, client)
  local okk, err = pcall(coroutine.wrap(function() while true do end end))
  ok(client, "survived: " .. tostring(okk) .. " " .. tostring(err))
end

routes["/generator-loop"] = function(_, client)
  local out = {}
  for v in coroutine.wrap(function() coroutine.yield(1); while true do end end) do out[#out + 1] = v end
  ok(client, "survived " .. #out)
end

routes["/loop"] = function() while true do end end

routes["/gc-loop"] = function(_, client)
  client:write("Status: 200 OK\r\n\r\n")
  client:flush()
  setmetatable({}, { __gc = function() while true do end end })
  collectgarbage()
  collectgarbage()
end

routes["/nested-serve"] = function(_, client)
  local okk, err = pcall(scgi.handle_requests, function() end, { socket = "/nonexistent/x" })
  ok(client, tostring(okk) .. " " .. tostring(err))
end

return R.handler(routes, function(_, client)
  return client:respond(404, { ["Content-Type"] = "text/plain" }, "no route")
end)
