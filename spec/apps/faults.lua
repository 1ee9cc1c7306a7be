-- spec/apps/faults.lua: routes for spec/faults_spec.lua and spec/slow_spec.lua. What a handler
-- sees when the web server goes away is written to stderr as "FAULTS ..." lines, so the specs can
-- tell from the server's log what happened inside.
local core = require "scgi.core"
local R = require "router"
local ok, query = R.ok, R.query

local function note(...)
  local parts = { "FAULTS ", ... }
  for i = 2, #parts do parts[i] = tostring(parts[i]) end
  io.stderr:write(table.concat(parts) .. "\n") -- one write: a reader never sees half a line
  io.stderr:flush()
end

local routes = {}

routes["/hello"] = function(_, client) ok(client, "Hello world\n") end

-- Echoes the body; a body cut short is noted with what read returned.
routes["/echo"] = function(headers, client)
  local body, err, code = client:read("a")
  if body == nil then
    return note("echo ", headers.QUERY_STRING or "", ": read failed: ", tostring(err), " ", tostring(code))
  end
  ok(client, body)
end

-- Answers without reading the body (the server drains it after the response).
routes["/noread"] = function(headers, client)
  ok(client, "did not read " .. headers.CONTENT_LENGTH .. " bytes\n")
end

-- ?mb=N: N MiB in 64 KiB writes; a write that fails is noted.
routes["/big"] = function(headers, client)
  local q = query(headers)
  local mb = tonumber(q.mb) or 1
  local chunk = ("z"):rep(65536)
  client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
  for i = 1, mb * 16 do
    local r, err, code = client:write(chunk)
    if not r then
      return note("big ", q.tag or "", ": write failed after ", i - 1, " chunks: ", tostring(err), " ", tostring(code))
    end
  end
  note("big ", q.tag or "", ": wrote everything")
end

-- Sleeps ?ms= ms, then writes: the web server may have gone away meanwhile.
routes["/sleep-then-write"] = function(headers, client)
  local q = query(headers)
  core.sleep((tonumber(q.ms) or 300) / 1000)
  local r, err, code = client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nwoke\n")
  if r then r, err, code = client:flush() end
  -- over TCP a web server that closed shows as a FIN only, as a half-close does: the first bytes
  -- sent get its reset, and the write after them says closed
  for _ = 1, 5 do
    if not r then break end
    core.sleep(0.05)
    r, err, code = client:write("more\n")
    if r then r, err, code = client:flush() end
  end
  note("sleep-then-write ", q.tag or "", ": ", r and "written" or ("write failed: " .. tostring(err) .. " " .. tostring(code)))
end

routes["/sleep"] = function(headers, client)
  local ms = tonumber(query(headers).ms) or 100
  core.sleep(ms / 1000)
  ok(client, "slept " .. ms .. "\n")
end

-- ?ms=N: runs Lua for N ms without yielding (under --cpu-limit), holding the worker.
routes["/busy"] = function(headers, client)
  local ms = tonumber(query(headers).ms) or 1000
  local t0 = core.now()
  while core.now() - t0 < ms / 1000 do end
  ok(client, "busy " .. ms .. "\n")
end

-- Objects whose __gc raises: ?n= of them per request, and a full collection every ?every=
-- requests, so finalizers run both inside a collection the handler asks for and in the
-- collector's own steps.
local raising = { __gc = function(self) error("raised in __gc #" .. self.i) end }
local raising_table = { __gc = function() error({ not_a = "string" }) end }
local count = 0
routes["/gc-error"] = function(headers, client)
  local q = query(headers)
  local n, every = tonumber(q.n) or 100, tonumber(q.every) or 10
  count = count + 1
  for i = 1, n do
    setmetatable({ i = i, pad = ("g"):rep(100) }, i % 2 == 0 and raising or raising_table)
  end
  if count % every == 0 then collectgarbage("collect") end
  ok(client, "gc-error " .. count .. "\n")
end

-- Leaves objects with a raising __gc behind in the state (finalized when the state closes).
routes["/gc-error-pending"] = function(_, client)
  _G.pending_gc = _G.pending_gc or {}
  for i = 1, 10 do _G.pending_gc[i] = setmetatable({ i = i }, raising) end
  ok(client, "pending\n")
end

-- The worker's Lua memory, for a spec that checks the state does not grow.
routes["/memory"] = function(_, client)
  collectgarbage("collect")
  collectgarbage("collect")
  ok(client, tostring(core.worker().lua_memory))
end

-- A CGI head without a colon: the server passes it on untouched; the web server decides.
routes["/malformed-head"] = function(_, client)
  client:write("garbage without colon\r\n\r\nbody")
end

-- A head that ends with bare LFs and has a header line with no name.
routes["/malformed-head2"] = function(_, client)
  client:write("Status: 200 OK\n: no name\n\nbody2")
end

return R.handler(routes)
