-- spec/apps/budget.lua: routes for spec/budget_spec.lua: scgi.sleep, the request budget, the CPU
-- guard, the memory limit, client:closed() and scgi.worker().
local scgi = require "scgi"
local R = require "router"
local ok, query = R.ok, R.query

-- With BUDGET_SLEEP_AT_LOAD set, the app calls scgi.sleep while it is loaded (outside any
-- request): loading must fail with a message that names scgi.sleep.
if os.getenv("BUDGET_SLEEP_AT_LOAD") then scgi.sleep(0.1) end

local routes = {}

-- A table of plain values as Lua source the spec can load back.
local function serialise(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = { "return {" }
  for _, k in ipairs(keys) do
    local v = t[k]
    local vs = type(v) == "string" and ("%q"):format(v) or tostring(v)
    out[#out + 1] = ("[%q]=%s,"):format(tostring(k), vs)
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n")
end

-- What the handlers saw, keyed by the ?id= the spec chose; read back through /result.
local results = {}
-- How /stream ended, per ?id=.
local stream_end = {}

routes["/hello"] = function(_, client) ok(client, "Hello world\n") end

-- scgi.worker() as Lua source.
routes["/worker"] = function(_, client)
  local w = scgi.worker()
  ok(client, serialise(w))
end

-- ?s=seconds: sleeps, then answers "slept S".
routes["/sleep"] = function(headers, client)
  local s = tonumber(query(headers).s) or 1
  scgi.sleep(s)
  ok(client, "slept " .. s)
end

-- An endless loop without yielding.
routes["/loop"] = function()
  while true do end
end

-- An endless loop whose inner endless loop is protected by pcall, so a plain error raised in the
-- inner loop would be caught and the outer loop would go on.
routes["/pcall-loop"] = function()
  while true do pcall(function() while true do end end) end
end

-- Same with coroutine.resume (also catches errors) and a fresh coroutine each turn.
routes["/resume-loop"] = function()
  while true do coroutine.resume(coroutine.create(function() while true do end end)) end
end

-- An endless loop of C calls of about 3 ms each (a 4 MiB string upper-cased), with few VM
-- instructions between them: limits must be kept in time, not in instructions.
local block = ("0123456789abcdef"):rep(4096)
routes["/c-loop"] = function()
  while true do local _ = block:rep(64):upper() end
end

-- Keeps the worker busy (no yielding) for ms milliseconds of wall-clock time.
local function spin(ms)
  local t = scgi.now()
  while scgi.now() - t < ms / 1000 do end
end

-- ?ms=: spins that long, then measures (scgi.now) how long scgi.sleep(?s=) really parked.
routes["/spin-sleep"] = function(headers, client)
  local q = query(headers)
  spin(tonumber(q.ms) or 800)
  local t0 = scgi.now()
  scgi.sleep(tonumber(q.s) or 1)
  ok(client, ("%.3f"):format(scgi.now() - t0))
end

-- ?n= segments of ?ms= milliseconds of spinning, with a short sleep between two: no segment is
-- over the CPU limit although their sum is.
routes["/spin-segments"] = function(headers, client)
  local q = query(headers)
  for i = 1, tonumber(q.n) or 3 do
    if i > 1 then scgi.sleep(0.01) end
    spin(tonumber(q.ms) or 600)
  end
  ok(client, "segments done")
end

-- Writes and flushes part of the response, then sleeps ?s= seconds, then writes the rest.
routes["/partial-sleep"] = function(headers, client)
  local s = tonumber(query(headers).s) or 5
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
  assert(client:flush() == client)
  scgi.sleep(s)
  client:write("-rest")
end

-- Allocates without bound: 1 MiB strings kept in a table.
routes["/alloc"] = function(_, client)
  local keep = {}
  local i = 0
  while true do
    i = i + 1
    keep[i] = string.rep("m", 1048576 - 16) .. i
  end
  ok(client, "unreachable " .. #keep)
end

-- Allocates without bound, catching the memory error with pcall, then answers what it caught
-- and whether it can still allocate a little (the memory it held is garbage by then).
routes["/alloc-pcall"] = function(_, client)
  local okk, err = pcall(function()
    local keep = {}
    for i = 1, 1e9 do keep[i] = string.rep("p", 1048576 - 16) .. i end
  end)
  collectgarbage()
  local small = string.rep("s", 1000)
  ok(client, "pcall=" .. tostring(okk) .. " err=" .. tostring(err) .. " small=" .. #small)
end

-- ?mb=N: N MiB in 64 KiB writes; how it ended is kept under ?id=.
routes["/stream"] = function(headers, client)
  local q = query(headers)
  local mb = tonumber(q.mb) or 1
  client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
  local chunk = string.rep("x", 65536)
  for _ = 1, mb * 16 do
    local r, err = client:write(chunk)
    if not r then
      stream_end[q.id or "-"] = "write " .. tostring(r) .. " " .. tostring(err)
      return
    end
  end
  stream_end[q.id or "-"] = "done"
end

routes["/stream-end"] = function(headers, client)
  ok(client, tostring(stream_end[query(headers).id or "-"]))
end

-- Sleeps ?s= seconds, then writes (the peer has gone by then) and records what write returned,
-- then what client:closed() and flush say, under ?id=.
routes["/sleep-then-write"] = function(headers, client)
  local q = query(headers)
  local s = tonumber(q.s) or 1
  scgi.sleep(s)
  local r = {}
  local w1, e1 = client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nlate")
  r.write = w1 == client and "client" or tostring(w1)
  r.write_err = tostring(e1)
  r.closed = client:closed()
  local f1, fe = client:flush()
  r.flush = f1 == client and "client" or tostring(f1)
  r.flush_err = tostring(fe)
  results[q.id or "-"] = r
end

-- Sleeps ?s= seconds, then asks client:closed() first, then writes; records both under ?id=.
routes["/sleep-then-closed"] = function(headers, client)
  local q = query(headers)
  local s = tonumber(q.s) or 1
  local before = client:closed()
  scgi.sleep(s)
  local r = { before = before, closed = client:closed() }
  local w1, e1 = client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nlate")
  r.write = w1 == client and "client" or tostring(w1)
  r.write_err = tostring(e1)
  results[q.id or "-"] = r
end

-- Sleeps ?s= seconds, then writes and flushes a byte every 0.05 s (at most 20 times) until one
-- fails; records under ?id= how many went through, the error and what client:closed() says.
routes["/sleep-then-writes"] = function(headers, client)
  local q = query(headers)
  scgi.sleep(tonumber(q.s) or 1)
  local r = { writes_ok = 0 }
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
  for _ = 1, 20 do
    local w, e = client:write("x")
    local f, fe = client:flush()
    if not (w and f) then
      r.err, r.closed = e or fe, client:closed()
      break
    end
    r.writes_ok = r.writes_ok + 1
    scgi.sleep(0.05)
  end
  results[q.id or "-"] = r
end

routes["/result"] = function(headers, client)
  local r = results[query(headers).id or "-"]
  ok(client, r and serialise(r) or "return nil")
end

-- scgi.sleep inside a coroutine the handler made: the request parks, then the coroutine goes on.
routes["/sleep-in-coroutine"] = function(_, client)
  local co = coroutine.wrap(function() scgi.sleep(0.05) return "slept" end)
  local okk, err = pcall(co)
  ok(client, "pcall=" .. tostring(okk) .. " err=" .. tostring(err))
end

-- scgi.sleep under pcall in the handler's own coroutine works (pcall can yield in Lua 5.4).
routes["/sleep-in-pcall"] = function(_, client)
  local okk, err = pcall(scgi.sleep, 0.05)
  ok(client, "pcall=" .. tostring(okk) .. " err=" .. tostring(err))
end

-- A to-be-closed variable whose __close never returns, in a handler that sleeps past the request
-- budget: discarding the coroutine runs the __close.
routes["/close-loop"] = function(headers, client)
  local guard <close> = setmetatable({}, { __close = function() while true do end end })
  scgi.sleep(tonumber(query(headers).s) or 5)
  ok(client, "woke")
end

return R.handler(routes)
