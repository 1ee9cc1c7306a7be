-- spec/apps/shared.lua: routes over scgi.shared.counters and scgi.shared.cache for shared_spec.
local scgi = require "scgi"
local R = require "router"


local function answer(client, ...)
  local out = table.pack(...)
  for i = 1, out.n do out[i] = string.format("%q", out[i]) end
  client:respond(200, { ["Content-Type"] = "text/plain" }, "return " .. table.concat(out, ", ", 1, out.n))
end

-- path -> function(query) whose results are the answer.
local routes = {}

-- ?n=N: N increments of "hits" by 1, starting from 0.
routes["/incr"] = function(q)
  local d = scgi.shared.counters
  local v
  for _ = 1, tonumber(q.n) or 1 do v = assert(d:incr("hits", 1, 0)) end
  return v
end

routes["/get"] = function(q) return scgi.shared[q.dict or "counters"]:get(q.key) end

routes["/types"] = function()
  local d = scgi.shared.cache
  d:set("s", "text\0bytes")
  d:set("i", 42)
  d:set("f", 1.5)
  d:set("b", false)
  local s, i, f, b = d:get("s"), d:get("i"), d:get("f"), d:get("b")
  return s, math.type(i), i, math.type(f), f, type(b), b
end

routes["/add"] = function()
  local d = scgi.shared.cache
  d:delete("a")
  local ok1, err1, forcible1 = d:add("a", 1)
  local ok2, err2, forcible2 = d:add("a", 2)
  local ok3, err3 = d:replace("missing", 1)
  return ok1, err1, forcible1, ok2, err2, forcible2, ok3, err3, d:get("a")
end

routes["/incr-errors"] = function()
  local d = scgi.shared.cache
  d:set("str", "x")
  local a, aerr = d:incr("nothing-here", 1)
  local b, berr = d:incr("str", 1)
  return a, aerr, b, berr, d:incr("float", 0.5, 1)
end

routes["/ttl"] = function(q)
  local d = scgi.shared.cache
  if q.set then d:set("t", "short-lived", tonumber(q.set)) end
  return d:get("t")
end

routes["/too-big"] = function()
  local d = scgi.shared.cache
  d:set("keep", "kept")
  local ok, err, forcible = d:set("keep", ("x"):rep(100000))
  return ok, err, d:get("keep"), forcible
end

-- Fills the 64K cache with 200 entries of 1000 bytes: the oldest are evicted.
routes["/lru"] = function()
  local d = scgi.shared.cache
  d:flush_all()
  local forced = {}
  for i = 1, 200 do
    local ok, _, forcible = d:set("e" .. i, ("v"):rep(1000))
    if ok and forcible then forced[#forced + 1] = i end
  end
  local used, cap, count = d:usage()
  return d:get("e1") == nil, d:get("e200") ~= nil, used <= cap, count < 200, #d:keys(0) == count,
    forced[1] > 1 and forced[#forced] == 200, #d:get_keys(0) == count
end

-- Entries past their ttl make room without counting as forcible; live ones count.
routes["/forcible"] = function()
  local d = scgi.shared.cache
  d:flush_all()
  for i = 1, 200 do d:set("t" .. i, ("v"):rep(1000), 0.05) end
  scgi.sleep(0.1)
  local expired_forced = 0
  for i = 1, 30 do
    local _, _, forcible = d:set("n" .. i, ("v"):rep(1000))
    if forcible then expired_forced = expired_forced + 1 end
  end
  return expired_forced
end

routes["/misuse"] = function()
  local ok1, e1 = pcall(function() scgi.shared.cache:set("k", {}) end)
  local ok2, e2 = pcall(function() scgi.shared.cache:get("") end)
  return ok1, e1, ok2, e2, scgi.shared.nope == nil, tostring(scgi.shared.cache)
end

-- With --shared big:SIZE and --memory-limit: stores a value of ?mb= MiB once, then fills the
-- heap with ?fill= MiB (in 1 MiB strings) so that reading the value back runs out of memory; what the get gave.
routes["/get-no-memory"] = function(q)
  local d = scgi.shared.big
  if not d:get("ready") then
    assert(d:set("v", ("v"):rep(tonumber(q.mb) * 1048576)))
    assert(d:set("ready", true))
    collectgarbage()
  end
  local filler = {}
  for i = 1, tonumber(q.fill) do filler[i] = ("f"):rep(1048576 - 64) .. i end
  local ok, err = pcall(d.get, d, "v")
  filler = nil
  collectgarbage()
  return ok, err
end

local handlers = {}
for path, route in pairs(routes) do
  handlers[path] = function(headers, client) answer(client, route(R.query(headers))) end
end

return R.handler(handlers, function(_, client) return client:respond(404, {}, "no route") end)
