-- soak/app.lua: the app the soak test (soak/run.lua) serves. Every answer is deterministic so
-- the clients can check it byte for byte.
local core = require "scgi.core" -- preloaded in every worker state: sleep without lua/ on the path

local function query(headers)
  local q = {}
  for k, v in (headers.QUERY_STRING or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return q
end

local function ok(client, body, ctype)
  client:write("Status: 200 OK\r\nContent-Type: ", ctype or "text/plain", "\r\n\r\n", body)
end

local routes = {}

routes["/hello"] = function(headers, client)
  ok(client, "hello " .. (query(headers).n or "-") .. "\n")
end

routes["/echo"] = function(_, client)
  local body = client:read("a")
  if body == nil then return end -- the client went away mid-body (an "aborted" request)
  ok(client, body, "application/octet-stream")
end

-- Reads only the first 10 bytes of the body; the server drains the rest.
routes["/read-some"] = function(_, client)
  local head = client:read(10) or ""
  ok(client, "head " .. head .. "\n")
end

-- Garbage for the collector: tables, strings, closures and objects with a __gc that runs later.
local finalized = 0
local gc_mt = { __gc = function() finalized = finalized + 1 end }
routes["/churn"] = function(headers, client)
  local n = tonumber(query(headers).n) or 100
  local sum, keep = 0, {}
  for i = 1, n do
    local t = { i, tostring(i), string.rep("c", i % 64), function() return i end }
    sum = sum + #t[2] + #t[3] + t[4]()
    keep[#keep + 1] = setmetatable({ t }, gc_mt)
  end
  ok(client, ("churn %d %d\n"):format(n, sum))
end

-- ?ms=N: parks the request N ms on scgi.sleep.
routes["/sleep"] = function(headers, client)
  local ms = tonumber(query(headers).ms) or 10
  core.sleep(ms / 1000)
  ok(client, ("slept %d\n"):format(ms))
end

-- ?kb=N: N KiB of a known pattern, in 16 KiB writes (parks while the socket is full).
local block = ("0123456789abcdef"):rep(1024)
routes["/stream"] = function(headers, client)
  local kb = tonumber(query(headers).kb) or 64
  client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
  for _ = 1, kb // 16 do
    if not client:write(block) then return end
  end
end

routes["/error"] = function() error("soak: an error from the handler") end

-- Answers, and leaves behind an object whose __gc raises (Lua turns that into a warning).
local bad_gc = { __gc = function() error("soak: an error in __gc") end }
routes["/gc-error"] = function(_, client)
  setmetatable({}, bad_gc)
  ok(client, "gc-error\n")
end

return function(headers, client)
  local path = (headers.REQUEST_URI or "/"):match("^[^?]*")
  local route = routes[path]
  if not route then
    return client:respond(404, { ["Content-Type"] = "text/plain" }, "no route " .. path)
  end
  return route(headers, client)
end
