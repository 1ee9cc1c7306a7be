-- spec/apps/runtime_timers.lua: routes for spec/runtime_timers_spec.lua: scgi.timer and scgi.every
-- set from requests and at load time. What the timers see is recorded in the shared dictionary
-- scgi.shared.timers (the server runs with --shared timers:1M) as Lua source, which /get answers;
-- with TIMERS_DIR set, a timer that runs while the worker stops writes its record to a file there.
local scgi = require "scgi"
local R = require "router"
local C = require "runtime_common"
local pack, answer = C.pack, C.answer

local dict = assert(scgi.shared.timers, "runtime_timers.lua needs --shared timers:SIZE")
local dir = os.getenv("TIMERS_DIR")

-- Which load of the app file this state is (1, then 2 after a reload ...): per server, so run
-- the specs that compare it with one worker.
local generation = assert(dict:incr("generation", 1, 0))

-- Records value under key in the dictionary (and, with TIMERS_DIR, in the file of that name).
local function record(key, value)
  local src = C.source(value)
  assert(dict:set(key, src))
  if dir then
    local f = assert(io.open(dir .. "/" .. key, "w"))
    f:write(src)
    f:close()
  end
end

-- Appends a value to the list recorded under key.
local function append(key, value)
  local old = dict:get(key)
  local list = old and load("return " .. old)() or {}
  list[#list + 1] = value
  record(key, list)
end

-- A to-be-closed value that records true under key when its scope ends.
local function on_close(key)
  return setmetatable({}, { __close = function() record(key, true) end })
end

-- At load time (TIMERS_AT_LOAD=1): a timer with arguments and an every, in every worker.
local load_results
if os.getenv("TIMERS_AT_LOAD") then
  local id = scgi.worker().id
  load_results = {
    timer = pack(scgi.timer(0.05, function(premature, a, b)
      record("load-timer:" .. id, { premature = premature, a = a, b = b, generation = generation })
    end, "from the main chunk", 2)),
    every = pack(scgi.every(0.2, function(premature)
      assert(dict:incr("load-every:" .. id, 1, 0))
      if premature then record("load-every-premature:" .. generation, true) end
    end)),
  }
end

-- At load time (TIMERS_MANY_ARGS=N): a timer with N arguments (1..N) records how many it got
-- and their sum.
if os.getenv("TIMERS_MANY_ARGS") then
  local n, list = tonumber(os.getenv("TIMERS_MANY_ARGS")), {}
  for i = 1, n do list[i] = i end
  local id = scgi.worker().id
  assert(scgi.timer(0.01, function(premature, ...)
    local sum = 0
    for i = 1, select("#", ...) do sum = sum + select(i, ...) end
    record("many-args:" .. id, { premature = premature, n = select("#", ...), sum = sum })
  end, table.unpack(list)))
end

local routes = {}

routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end

-- ?key=: what is recorded under key (nil if nothing).
routes["/get"] = function(headers, client)
  local v = dict:get(C.query(headers).key)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nreturn ", v or "nil")
end

routes["/generation"] = function(_, client) answer(client, { generation = generation }) end

routes["/load-results"] = function(_, client) answer(client, { r = load_results }) end

-- ?key=&delay=: a timer that records what it got and that the cooperative API works in it
-- (sleep, spawn and wait); the answer is what scgi.timer returned and when it was set.
routes["/timer/once"] = function(headers, client)
  local q = C.query(headers)
  local delay = tonumber(q.delay) or 0.2
  local set_at = scgi.now()
  local r = pack(scgi.timer(delay, function(premature, key, extra)
    local fired_at = scgi.now()
    scgi.sleep(0.1)
    local slept = scgi.now() - fired_at
    local t = scgi.spawn(function(x)
      scgi.sleep(0.05)
      return x * 2
    end, 21)
    record(key, { premature = premature, extra = extra, fired_at = fired_at, set_at = set_at,
      slept = slept, task = pack(scgi.wait(t)), tostring_task = tostring(t) })
  end, q.key, "extra arg"))
  answer(client, { r = r, set_at = set_at })
end

-- ?key=: a timer (delay 0) set while the handler still sleeps 0.3 s: when each ran.
routes["/timer/during"] = function(headers, client)
  local key = C.query(headers).key
  local set_at = scgi.now()
  scgi.timer(0, function() record(key, { fired_at = scgi.now(), set_at = set_at }) end)
  scgi.sleep(0.3)
  record(key .. ":handler", { returned_at = scgi.now() })
  R.ok(client, "set\n")
end

-- ?key=&path=: a timer that asks this very server for /hello over a cooperative unix socket
-- (socket.unix, as LuaSocket's API): with one worker, only a socket that parks can get the answer.
routes["/timer/ask-self"] = function(headers, client)
  local q = C.query(headers)
  local r = pack(scgi.timer(0.05, function()
    local s = require("socket.unix")()
    local kind = tostring(s)
    s:settimeout(5)
    local ok, err = s:connect(q.path)
    local sent = ok and pack(s:send(C.scgi_get("/hello")))
    local got = ok and pack(s:receive("*a"))
    s:close()
    record(q.key, { kind = kind, connect = pack(ok, err), sent = sent, got = got })
  end))
  answer(client, { r = r })
end

-- ?key=&interval=&work=: an every whose runs record when they start and end; each run works
-- (sleeps) ?work= seconds.
routes["/timer/every"] = function(headers, client)
  local q = C.query(headers)
  local work = tonumber(q.work) or 0.1
  local r = pack(scgi.every(tonumber(q.interval) or 0.2, function(premature, key)
    if premature then return end
    append(key .. ":starts", scgi.now())
    scgi.sleep(work)
    append(key .. ":ends", scgi.now())
  end, q.key))
  answer(client, { r = r })
end

-- ?key=: a timer that raises, then one that records (the worker goes on running timers).
routes["/timer/error"] = function(headers, client)
  local key = C.query(headers).key
  local r1 = pack(scgi.timer(0, function() error("timer boom") end))
  local r2 = pack(scgi.timer(0.1, function() record(key, "after the error") end))
  answer(client, { r1 = r1, r2 = r2 })
end

-- ?key=: an every that raises at each run, after counting it under key.
routes["/timer/every-error"] = function(headers, client)
  local key = C.query(headers).key
  local r = pack(scgi.every(0.2, function(premature)
    if premature then return end
    assert(dict:incr(key, 1, 0))
    error("every boom")
  end))
  answer(client, { r = r })
end

-- ?key=&delay=: a timer far off (it runs early only as premature): it records premature, the
-- generation of the state it runs in, what a new scgi.timer says then, and that it could sleep.
routes["/timer/pending"] = function(headers, client)
  local q = C.query(headers)
  local r = pack(scgi.timer(tonumber(q.delay) or 30, function(premature, key)
    local t0 = scgi.now()
    scgi.sleep(0.1)
    record(key, { premature = premature, generation = generation, slept = scgi.now() - t0,
      again = pack(scgi.timer(1, function() end)) })
  end, q.key))
  answer(client, { r = r })
end

-- ?n=&delay=: n timers; what each scgi.timer (or, with ?every=1, scgi.every) returned.
routes["/timer/many"] = function(headers, client)
  local q = C.query(headers)
  local set = q.every and scgi.every or scgi.timer
  local out = {}
  for i = 1, tonumber(q.n) or 1 do out[i] = pack(set(tonumber(q.delay) or 0.2, function() end)) end
  answer(client, { r = out })
end

-- ?key=&n=: a timer with n arguments (1..n) records how many it got and their sum.
routes["/timer/many-args"] = function(headers, client)
  local q = C.query(headers)
  local n, list = tonumber(q.n), {}
  for i = 1, n do list[i] = i end
  local r = pack(scgi.timer(0, function(premature, ...)
    local sum = 0
    for i = 1, select("#", ...) do sum = sum + select(i, ...) end
    record(q.key, { premature = premature, n = select("#", ...), sum = sum })
  end, table.unpack(list)))
  answer(client, { r = r })
end

-- ?key=&pause=: a timer that sleeps ?pause= seconds (past --timer-timeout); its <close> records
-- key:closed, and it records key:woke if it ever wakes.
routes["/timer/long"] = function(headers, client)
  local q = C.query(headers)
  local r = pack(scgi.timer(0, function(_, key)
    local _ <close> = on_close(key .. ":closed")
    record(key .. ":started", true)
    scgi.sleep(tonumber(q.pause) or 5)
    record(key .. ":woke", true)
  end, q.key))
  answer(client, { r = r })
end

-- Bad arguments: what scgi.timer and scgi.every raise or return.
routes["/timer/bad"] = function(_, client)
  answer(client, {
    negative = pack(pcall(scgi.timer, -1, function() end)),
    no_function = pack(pcall(scgi.timer, 1, 42)),
    every_zero = pack(pcall(scgi.every, 0, function() end)),
  })
end

return R.handler(routes)
