-- http_client.lua: LuaSocket's own HTTP client (socket.http) called from a handler. Inside a
-- request, socket.http's socket is one of scgi-lua's cooperative sockets, so the call parks this
-- request and the worker serves others meanwhile.
-- Run: sh examples/services.sh examples/http_client.lua --workers 1
--   curl 'http://127.0.0.1:8080/?delay=1'
local http = require "socket.http"
local scgi = require "scgi"

local upstream = os.getenv("HTTP_URL") or "http://127.0.0.1:8081"

return function(headers, client)
  local delay = tonumber(scgi.parse_query(headers.QUERY_STRING).delay) or 0
  local t0 = scgi.now()
  local body, code, hs = http.request(upstream .. "/quote?delay=" .. delay)
  if not body then -- code is the error: "connection refused", "timeout", ...
    return client:respond(502, { ["Content-Type"] = "text/plain" }, "upstream: " .. tostring(code) .. "\n")
  end
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("upstream said %d (%s) in %.3f s: %s"):format(code, hs["content-type"], scgi.now() - t0, body))
end
