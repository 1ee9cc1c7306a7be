-- spec/apps/traffic.lua: routes for spec/traffic_spec.lua (what nginx passes on); every other
-- path goes to test.lua's handler.
local R = require "router"
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local base = dofile(dir .. "test.lua")

local routes = {}

-- A redirect the CGI way: Location and no Status (nginx answers 302).
routes["/location"] = function(_, client) client:write("Location: /elsewhere\r\n\r\nmoved") end

-- No CGI head at all (nginx answers 502).
routes["/nohead"] = function(_, client) client:write("hello world, no head\n") end

-- The body and the two lengths nginx sent.
routes["/lengths"] = function(headers, client)
  local body = client:read("a")
  client:respond(200, { ["Content-Type"] = "text/plain" }, ("%s %s %s"):format(
    headers.CONTENT_LENGTH, tostring(headers.HTTP_CONTENT_LENGTH), body))
end

-- package.path and whether LuaSocket loads.
routes["/paths"] = function(_, client)
  local okk = pcall(require, "socket")
  client:respond(200, { ["Content-Type"] = "text/plain" }, package.path .. "\n" .. tostring(okk))
end

-- A module first required by a handler (from the directory in ?dir=).
routes["/lazy"] = function(headers, client)
  local d = headers.QUERY_STRING:match("dir=([^&]+)")
  package.path = d .. "/?.lua;" .. package.path
  client:respond(200, { ["Content-Type"] = "text/plain" }, tostring(require("lazy_mod")))
end

return R.handler(routes, base)
