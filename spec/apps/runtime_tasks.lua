-- spec/apps/runtime_tasks.lua: routes for spec/runtime_tasks_spec.lua: coroutines a handler makes
-- that wait inside (generators, body readers, nested ones), and tasks (scgi.spawn, wait, kill).
-- Most routes answer what the calls returned as Lua source (runtime_common.answer).
local scgi = require "scgi"
local R = require "router"
local C = require "runtime_common"
local pack, answer = C.pack, C.answer

local routes = {}

-- What the to-be-closed variables of stopped tasks and coroutines recorded, by name (/closed).
local closed = {}

-- A to-be-closed value that records `name` in `closed` when its scope ends.
local function recorder(name)
  return setmetatable({}, { __close = function() closed[name] = (closed[name] or 0) + 1 end })
end

-- Task handles kept across requests, by name (/kept).
local kept = {}

routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end

-- ?name=: how many times the to-be-closed variable `name` was closed.
routes["/closed"] = function(headers, client)
  answer(client, { count = closed[C.query(headers).name] or 0 })
end

---- user coroutines that wait ----

-- ?n=&pause=: a coroutine.wrap generator yields 1..n and sleeps ?pause= between values; the
-- handler collects them with a plain for loop.
routes["/co/generator"] = function(headers, client)
  local q = C.query(headers)
  local n, pause = tonumber(q.n) or 3, tonumber(q.pause) or 0.2
  local t0 = scgi.now()
  local gen = coroutine.wrap(function()
    for i = 1, n do
      scgi.sleep(pause)
      coroutine.yield(i, scgi.now() - t0)
    end
  end)
  local values, times = {}, {}
  for v, at in gen do
    values[#values + 1] = v
    times[#times + 1] = at
  end
  answer(client, { values = values, times = times, elapsed = scgi.now() - t0 })
end

-- Reads the body in a coroutine (coroutine.create + resume) that yields each chunk to the
-- handler; the status the handler saw between chunks, the chunks' sizes and the body.
routes["/co/read-body"] = function(_, client)
  local co = coroutine.create(function()
    while true do
      local chunk = client:read(1024)
      if not chunk then return "end" end
      coroutine.yield(chunk)
    end
  end)
  local parts, statuses, last = {}, {}, nil
  while true do
    local ok, v = coroutine.resume(co)
    assert(ok, v)
    statuses[#statuses + 1] = coroutine.status(co)
    if v == "end" then
      last = v
      break
    end
    parts[#parts + 1] = v
  end
  local body = table.concat(parts)
  answer(client, { body = body, len = #body, chunks = #parts, statuses = statuses, last = last })
end

-- A coroutine that resumes another one that sleeps and reads the clock, three levels deep; each
-- level yields what it got upwards with its own tag.
routes["/co/nested"] = function(_, client)
  local t0 = scgi.now()
  local inner = coroutine.wrap(function()
    for i = 1, 2 do
      scgi.sleep(0.1)
      coroutine.yield("inner" .. i)
    end
    return "inner done"
  end)
  local middle = coroutine.create(function()
    local got = {}
    for _ = 1, 3 do got[#got + 1] = inner() end
    scgi.sleep(0.1)
    coroutine.yield(table.concat(got, ","))
    return "middle done"
  end)
  local out = {}
  while coroutine.status(middle) ~= "dead" do
    local ok, v = coroutine.resume(middle)
    out[#out + 1] = tostring(ok) .. ":" .. tostring(v)
  end
  answer(client, { out = out, elapsed = scgi.now() - t0 })
end

-- A coroutine parked in a wait, seen from a task of the same request: its status, resuming it
-- (coroutine.resume, a wrap of it), closing it; then, after it ran on, its status again.
routes["/co/parked-status"] = function(_, client)
  local co = coroutine.create(function()
    scgi.sleep(0.4)
    return "woke"
  end)
  local wrapped = coroutine.wrap(function()
    scgi.sleep(0.4)
    return "wrapped woke"
  end)
  local probe = scgi.spawn(function()
    scgi.sleep(0.1)
    return {
      status = coroutine.status(co),
      resume = pack(coroutine.resume(co)),
      close = pack(pcall(coroutine.close, co)),
      wrapped = pack(pcall(wrapped)),
    }
  end)
  local first = pack(coroutine.resume(co))
  local second = pack(pcall(wrapped))
  local _, seen = scgi.wait(probe)
  answer(client, { seen = seen, first = first, second = second, after = coroutine.status(co) })
end

-- A coroutine kept between requests: /co/shared-park parks a request inside it for ?pause=
-- seconds; /co/shared-probe, from another request meanwhile, reports its status and resuming it.
local shared_co
routes["/co/shared-park"] = function(headers, client)
  local pause = tonumber(C.query(headers).pause) or 1
  shared_co = coroutine.create(function() scgi.sleep(pause) return "done" end)
  local r = pack(coroutine.resume(shared_co))
  answer(client, { result = r, status = coroutine.status(shared_co) })
end

routes["/co/shared-probe"] = function(_, client)
  answer(client, { status = coroutine.status(shared_co), resume = pack(coroutine.resume(shared_co)) })
end

-- ?mb=: a coroutine.wrap generator writes ?mb= MiB in 64 KiB pieces (client:write parks in it
-- while the web server does not read) and yields after each; the handler counts the pieces.
routes["/co/write-big"] = function(headers, client)
  local pieces = math.floor((tonumber(C.query(headers).mb) or 4) * 16)
  local chunk = ("0123456789abcdef"):rep(4096)
  client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
  local writer = coroutine.wrap(function()
    for i = 1, pieces do
      assert(client:write(chunk))
      coroutine.yield(i)
    end
  end)
  local n = 0
  for _ in writer do n = n + 1 end
  assert(n == pieces)
end

-- A coroutine.wrap that waits first, then loops without end (the CPU guard must stop it).
routes["/co/loop-after-wait"] = function(_, client)
  local f = coroutine.wrap(function()
    scgi.sleep(0.05)
    while true do end
  end)
  local ok, err = pcall(f)
  R.ok(client, "survived: " .. tostring(ok) .. " " .. tostring(err))
end

-- A coroutine.wrap that sleeps ?pause= seconds (past the request budget), its to-be-closed
-- variable named ?name=.
routes["/co/sleep"] = function(headers, client)
  local q = C.query(headers)
  local f = coroutine.wrap(function()
    local _ <close> = recorder(q.name or "co-sleep")
    scgi.sleep(tonumber(q.pause) or 5)
    return "slept"
  end)
  R.ok(client, f())
end

---- tasks ----

-- A task with arguments and several results (a nil among them); wait twice; tostring before
-- and after.
routes["/task/results"] = function(_, client)
  local t = scgi.spawn(function(a, b)
    scgi.sleep(0.1)
    return a + b, "x", nil, false
  end, 2, 3)
  local before = tostring(t)
  local first = pack(scgi.wait(t))
  local second = pack(scgi.wait(t))
  answer(client, { before = before, first = first, second = second, after = tostring(t),
    type = type(t) })
end

-- ?n=: a task spawned with n arguments (1..n) sums them; what wait gave.
routes["/task/many-args"] = function(headers, client)
  local n = tonumber(C.query(headers).n) or 100
  local list = {}
  for i = 1, n do list[i] = i end
  local t = scgi.spawn(function(...)
    local sum = 0
    for i = 1, select("#", ...) do sum = sum + select(i, ...) end
    return select("#", ...), sum
  end, table.unpack(list))
  answer(client, { waited = pack(scgi.wait(t)) })
end

-- A task starts on the next loop turn: what it recorded before and after the handler's first
-- wait, and scgi.spawn's argument check.
routes["/task/starts-later"] = function(_, client)
  local log = {}
  local t = scgi.spawn(function() log[#log + 1] = "task" end)
  log[#log + 1] = "handler"
  scgi.sleep(0)
  log[#log + 1] = "handler again"
  answer(client, { log = log, waited = pack(scgi.wait(t)), bad = pack(pcall(scgi.spawn, 42)) })
end

-- A task that raises: wait gives false and the error; the request goes on and answers 200.
routes["/task/error"] = function(_, client)
  local t = scgi.spawn(function()
    scgi.sleep(0.05)
    error("task boom")
  end)
  local t2 = scgi.spawn(function() error({ code = 7 }) end)
  local r = pack(scgi.wait(t))
  local r2 = pack(scgi.wait(t2))
  answer(client, { r = r, code = type(r2[2]) == "table" and r2[2].code, ok2 = r2[1] })
end

-- The handler answers and returns; its task raises 0.1 s later.
routes["/task/error-after-return"] = function(_, client)
  R.ok(client, "the handler answered\n")
  scgi.spawn(function()
    scgi.sleep(0.1)
    error("late task boom")
  end)
end

-- kill: a sleeping task (its to-be-closed variable runs), kill again, wait after.
routes["/task/kill"] = function(_, client)
  local t = scgi.spawn(function()
    local _ <close> = recorder("killed-task")
    scgi.sleep(10)
    return "not killed"
  end)
  scgi.sleep(0.05)
  local t0 = scgi.now()
  local killed = pack(scgi.kill(t))
  local waited = pack(scgi.wait(t))
  answer(client, { killed = killed, waited = waited, again = pack(scgi.kill(t)),
    waited_again = pack(scgi.wait(t)), tostring = tostring(t), elapsed = scgi.now() - t0,
    closed = closed["killed-task"] })
end

-- A task killed before it started (by a task spawned before it, so it runs first): it never
-- runs. The handler only sleeps and waits meanwhile (it does not kill: see /task/kill-then-sleep).
routes["/task/kill-unstarted"] = function(_, client)
  local ran, victim = false, nil
  local killer = scgi.spawn(function() return tostring(victim), scgi.kill(victim) end)
  victim = scgi.spawn(function() ran = true end)
  scgi.sleep(0.05)
  answer(client, { killer = pack(scgi.wait(killer)), waited = pack(scgi.wait(victim)), ran = ran })
end

-- wait on a task that ended long ago: at once, and as often as asked.
routes["/task/wait-ended"] = function(_, client)
  local t = scgi.spawn(function() return "quick" end)
  scgi.sleep(0.2)
  local t0 = scgi.now()
  local a = pack(scgi.wait(t))
  local b = pack(scgi.wait(t))
  answer(client, { a = a, b = b, elapsed = scgi.now() - t0, tostring = tostring(t) })
end

-- A task waits for itself and kills itself (both raise); another task waits for a third.
routes["/task/self"] = function(_, client)
  local me
  me = scgi.spawn(function()
    scgi.sleep(0)
    return pack(pcall(scgi.wait, me)), pack(pcall(scgi.kill, me))
  end)
  local other = scgi.spawn(function()
    scgi.sleep(0.1)
    return "other"
  end)
  local waiter = scgi.spawn(function() return scgi.wait(other) end)
  local _, w, k = scgi.wait(me)
  answer(client, { wait = w, kill = k, chained = pack(scgi.wait(waiter)) })
end

-- ?n= tasks that each sleep ?pause= seconds, waited for in order.
routes["/task/concurrent"] = function(headers, client)
  local q = C.query(headers)
  local pause = tonumber(q.pause) or 1
  local results, took = C.spawn_all(tonumber(q.n) or 5, function(k)
    scgi.sleep(pause)
    return k * 10
  end)
  answer(client, { results = results, elapsed = took })
end

-- The handler writes the head and a line, spawns a task that writes more after a pause, and
-- returns: the response ends when the task does.
routes["/task/after-return"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfrom the handler\n")
  client:flush()
  scgi.spawn(function()
    scgi.sleep(0.3)
    client:write("from the task\n")
    scgi.sleep(0.2)
    client:write("task done\n")
  end)
end

-- The handler returns at once without writing; a task writes the whole response later.
routes["/task/writes-all"] = function(_, client)
  scgi.spawn(function()
    scgi.sleep(0.2)
    R.ok(client, "written by a task\n")
  end)
end

-- ?pause=: tasks that sleep past the budget (their to-be-closed variables named ?name=N); the
-- handler waits for the first (?mode=wait, the default), or returns at once (?mode=return), or
-- writes a head first (?mode=head).
routes["/task/budget"] = function(headers, client)
  local q = C.query(headers)
  local name, pause = q.name or "budget", tonumber(q.pause) or 10
  if q.mode == "head" then
    client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhead sent\n")
    client:flush()
  end
  local tasks = {}
  for i = 1, 3 do
    tasks[i] = scgi.spawn(function()
      local _ <close> = recorder(name)
      scgi.sleep(pause)
      client:write("task ", i, " woke\n")
    end)
    kept[name .. i] = tasks[i]
  end
  if q.mode == "return" or q.mode == "head" then return end
  scgi.wait(tasks[1])
  R.ok(client, "the budget did not stop the tasks\n")
end

-- The handler spawns tasks (kept under ?name=), then raises.
routes["/task/handler-error"] = function(headers, client)
  local name = C.query(headers).name or "herr"
  for i = 1, 2 do
    kept[name .. i] = scgi.spawn(function()
      local _ <close> = recorder(name)
      scgi.sleep(5)
      client:write("task woke after the handler failed\n")
    end)
  end
  scgi.sleep(0.05)
  error("handler boom")
end

-- ?name=&pause=: a task kept under name sleeps ?pause= seconds; the handler waits for it.
routes["/task/hold"] = function(headers, client)
  local q = C.query(headers)
  kept[q.name] = scgi.spawn(function() scgi.sleep(tonumber(q.pause) or 1) return "held" end)
  local _, v = scgi.wait(kept[q.name])
  R.ok(client, v .. "\n")
end

-- ?name=: the kept task's tostring and what scgi.wait and scgi.kill say about it now (from
-- another request).
routes["/kept"] = function(headers, client)
  local t = kept[C.query(headers).name]
  answer(client, { tostring = tostring(t), wait = pack(pcall(scgi.wait, t)),
    kill = pack(pcall(scgi.kill, t)) })
end

-- What /task/close-wakes recorded, by ?name= (nil until its task ended).
local woken = {}

-- ?name=&what=read|write: with no budget (client:budget(0)), a task parks in client:read (the
-- body never comes) or client:write (the web server does not read); the handler closes the
-- client; what the task's call returned, and how long it waited, go under name.
routes["/task/close-wakes"] = function(headers, client)
  local q = C.query(headers)
  client:budget(0)
  local t = scgi.spawn(function()
    if q.what == "write" then
      client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
      local big = ("w"):rep(1048576)
      for _ = 1, 64 do
        local t0 = scgi.now()
        local ok, err = client:write(big)
        if not ok then return ok, err, scgi.now() - t0 end
      end
      return "all written"
    end
    local t0 = scgi.now()
    local data, err = client:read("a")
    return data, err, scgi.now() - t0
  end)
  scgi.sleep(0.3)
  if q.what ~= "write" then client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nclosed") end
  client:close()
  woken[q.name] = pack(scgi.wait(t))
end

routes["/task/woken"] = function(headers, client) answer(client, { r = woken[C.query(headers).name] }) end

-- A task that runs without end: the CPU guard stops the task; the handler answers.
routes["/task/loop"] = function(_, client)
  local t = scgi.spawn(function() while true do end end)
  local r = pack(scgi.wait(t))
  scgi.sleep(0.05)
  answer(client, { r = r, after = "the handler went on" })
end

-- A user coroutine inside a task that waits, and a task spawned from a task.
routes["/task/in-task"] = function(_, client)
  local outer = scgi.spawn(function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        scgi.sleep(0.05)
        coroutine.yield(i)
      end
    end)
    local got = {}
    for v in gen do got[#got + 1] = v end
    local inner = scgi.spawn(function() scgi.sleep(0.05) return "inner" end)
    return got, select(2, scgi.wait(inner))
  end)
  -- scgi.wait from inside a coroutine the handler resumes
  local waited = coroutine.wrap(function() return pack(scgi.wait(outer)) end)()
  answer(client, { r = waited })
end

-- A task that calls coroutine.yield outside any coroutine of its own: its error says so.
routes["/task/plain-yield"] = function(_, client)
  local t = scgi.spawn(function() coroutine.yield("nobody to get this") end)
  answer(client, { r = pack(scgi.wait(t)) })
end

-- Kills a sleeping task, then waits itself (scgi.sleep): what the sleep returned.
routes["/task/kill-then-sleep"] = function(_, client)
  local t = scgi.spawn(function() scgi.sleep(10) end)
  scgi.sleep(0.05)
  local killed = pack(scgi.kill(t))
  local slept = pack(pcall(scgi.sleep, 0.05))
  answer(client, { killed = killed, slept = slept })
end

-- Kills a sleeping task, then runs without end: the CPU guard (or the budget) must stop it.
routes["/task/kill-then-loop"] = function()
  local t = scgi.spawn(function() scgi.sleep(10) end)
  scgi.sleep(0.05)
  scgi.kill(t)
  while true do end
end

-- Outside a request (at load time) scgi.spawn raises; what it said.
local spawn_at_load = pack(pcall(scgi.spawn, function() end))
routes["/task/at-load"] = function(_, client) answer(client, { r = spawn_at_load }) end

return R.handler(routes)
