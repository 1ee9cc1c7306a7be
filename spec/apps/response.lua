-- spec/apps/response.lua: routes for spec/response_spec.lua: scgi.response's client:redirect and
-- client:sse (Server-Sent Events).
local scgi = require "scgi"
local R = require "router"

local routes = {}

-- Answers status with a text/plain body.
local function text(client, status, body)
  return client:respond(status, { ["Content-Type"] = "text/plain" }, body)
end

-- ?to=URL&status=N: a redirect.
routes["/redirect"] = function(headers, client)
  local q = scgi.parse_query(headers.QUERY_STRING)
  return client:redirect(q.to or "/", tonumber(q.status))
end

-- Each misuse of redirect and sse, caught; the messages as lines.
routes["/misuse"] = function(_, client)
  local out = {}
  R.try(out, "redirect-crlf", function() client:redirect("/a\r\nSet-Cookie: x=1") end)
  R.try(out, "redirect-nil", function() client:redirect(nil) end)
  R.try(out, "redirect-status", function() client:redirect("/a", 200) end)
  R.try(out, "sse-headers", function() client:sse("no") end)
  text(client, 200, table.concat(out, "\n") .. "\n")
end

-- ?dir=D&n=N: N events, each sent only once the spec acknowledged the one before by creating
-- D/ack<i>; so each must reach the spec on its own. Then an "end" event.
routes["/sse-lockstep"] = function(headers, client)
  local q = scgi.parse_query(headers.QUERY_STRING)
  local sse = assert(client:sse({ ["X-Stream"] = "lockstep" }))
  for i = 1, tonumber(q.n) or 3 do
    assert(sse:send("event " .. i .. "\nsecond line", "tick", i))
    local deadline = scgi.now() + 10
    while true do
      local f = io.open(q.dir .. "/ack" .. i)
      if f then
        f:close()
        break
      end
      if scgi.now() > deadline then error("no ack for event " .. i) end
      scgi.sleep(0.01)
    end
  end
  assert(sse:comment("done"))
  assert(sse:send("bye", "end"))
end

-- Keep-alive comments every 20 ms until the client goes away; says on stderr how it ended.
routes["/sse-until-gone"] = function(_, client)
  local sse = assert(client:sse())
  assert(sse:send("first"))
  local deadline = scgi.now() + 10
  local n = 0
  while scgi.now() < deadline do
    scgi.sleep(0.02)
    n = n + 1
    local ok, err = sse:comment("keep-alive " .. n)
    if not ok then
      io.stderr:write("SSE GONE after ", n, " comments: ", tostring(err), " closed()=",
        tostring(sse:closed()), "\n")
      io.stderr:flush()
      return
    end
  end
  io.stderr:write("SSE NOT GONE\n")
  io.stderr:flush()
end

return R.handler(routes, function(_, client, path) return text(client, 404, "no route " .. path .. "\n") end)
