-- spec/runtime_timers_spec.lua: scgi.timer and scgi.every on the real scgi-lua
-- (spec/apps/runtime_timers.lua): a timer outlives the request that set it and has the whole
-- cooperative API; every repeats, an interval after the previous run ended; timers set at load
-- time run in every worker; a timer's error is logged; pending timers run at once, premature, on
-- SIGHUP (in the old state) and SIGTERM; --max-timers and --timer-timeout.
local H = require "helper"

local SHARED = "--shared timers:1M"

-- What the app recorded under key (nil if nothing yet).
local function get(srv, key) return H.call(srv.addr, "/get", { key = key }) end

-- Waits (bounded) until something is recorded under key, and returns it.
local function wait_record(srv, key, timeout)
  return H.wait_for(function() return get(srv, key) end, timeout or 5, "a record under " .. key)
end

describe("scgi.timer from a request", function()
  local srv = H.serve("runtime_timers.lua", { workers = 1, args = { SHARED } })

  it("fires after its request ended, with its arguments, and can sleep, spawn and wait", function()
    local t0 = H.now()
    local r = H.call(srv.addr, "/timer/once", { key = "once", delay = 1 })
    assert.same({ n = 1, true }, r.r)
    assert.is_true(H.now() - t0 < 0.5, "the request waited for its timer")
    -- the request has ended; the timer has not fired yet
    assert.is_nil(get(srv, "once"))
    local rec = wait_record(srv, "once")
    assert.is_false(rec.premature)
    assert.equal("extra arg", rec.extra)
    assert.is_true(rec.fired_at - rec.set_at >= 0.99, ("fired %.3f s after it was set"):format(
      rec.fired_at - rec.set_at))
    assert.is_true(rec.slept >= 0.09, "scgi.sleep in a timer did not sleep: " .. rec.slept)
    assert.same({ n = 2, true, 42 }, rec.task)
    assert.equal("scgi.task (ended)", rec.tostring_task)
    H.hello_ok(srv.addr)
  end)

  it("a timer's cooperative unix socket (socket.unix) asks its own one worker for /hello", function()
    local r = H.call(srv.addr, "/timer/ask-self", { key = "ask", path = srv.addr })
    assert.same({ n = 1, true }, r.r)
    local rec = wait_record(srv, "ask")
    assert.matches("^unix{master}: ", rec.kind)
    assert.same({ n = 2, 1 }, rec.connect)
    local status, _, body = H.parse(rec.got[1])
    assert.equal(200, status, tostring(rec.got[1]))
    assert.equal("Hello world\n", body)
  end)

  it("every repeats; each run starts an interval after the previous one ended", function()
    local r = H.call(srv.addr, "/timer/every", { key = "ev", interval = 0.2, work = 0.1 })
    assert.same({ n = 1, true }, r.r)
    H.sleep(1.4)
    local starts, ends = get(srv, "ev:starts"), get(srv, "ev:ends")
    assert.is_true(#starts >= 3 and #starts <= 6, #starts .. " runs in 1.4 s")
    for i = 2, #starts do
      assert.is_true(starts[i] - starts[i - 1] >= 0.28,
        ("run %d started %.3f s after run %d"):format(i, starts[i] - starts[i - 1], i - 1))
      assert.is_true(starts[i] - ends[i - 1] >= 0.19,
        ("run %d started %.3f s after run %d ended"):format(i, starts[i] - ends[i - 1], i - 1))
    end
    -- it goes on
    H.wait_for(function() return #get(srv, "ev:starts") > #starts end, 2, "another run")
  end)

  it("a timer's error is logged with its source; the worker serves on and runs later timers", function()
    local mark = #srv.output()
    local r = H.call(srv.addr, "/timer/error", { key = "after-error" })
    assert.same({ n = 1, true }, r.r1)
    local out = H.wait_log(srv, mark, "timer boom")
    assert.truthy(out:find("#%d+ TIMER [^\n]*runtime_timers%.lua:%d+: handler error: [^\n]*runtime_timers%.lua:%d+: timer boom\n"), out)
    assert.equal("after the error", wait_record(srv, "after-error"))
    assert.is_true(srv.alive())
    H.hello_ok(srv.addr)
  end)

  it("an every whose function raises is logged at each run and goes on", function()
    local mark = #srv.output()
    assert.same({ n = 1, true }, H.call(srv.addr, "/timer/every-error", { key = "every-error" }).r)
    H.wait_for(function() return (get(srv, "every-error") or 0) >= 3 end, 5, "three runs")
    local out = H.log_since(srv, mark)
    assert.is_true(H.count(out, ": handler error: ") >= 2, out)
    assert.truthy(out:find("#%d+ TIMER [^\n]*runtime_timers%.lua:%d+: handler error: [^\n]*every boom"), out)
    H.hello_ok(srv.addr)
  end)

  it("a timer set with 300 and 5,000 arguments gets them all; the worker serves on", function()
    for _, n in ipairs({ 300, 5000 }) do
      local r = H.call(srv.addr, "/timer/many-args", { key = "many" .. n, n = n })
      assert.same({ n = 1, true }, r.r)
      local rec = wait_record(srv, "many" .. n)
      assert.same({ premature = false, n = n, sum = n * (n + 1) // 2 }, rec)
    end
    H.hello_ok(srv.addr)
  end)

  it("checks its arguments: a negative delay, no function, an every of 0 s", function()
    local r = H.call(srv.addr, "/timer/bad")
    -- (the function's name in the message is what Lua finds: scgi.timer or scgi.core.timer)
    for name, case in pairs({
      negative = "bad argument #1 to '[%w.]*timer' %(seconds out of range%)",
      no_function = "bad argument #2 to '[%w.]*timer' %(function expected, got number%)",
      every_zero = "bad argument #1 to '[%w.]*every' %(the interval must be positive%)",
    }) do
      assert.is_false(r[name][1], name)
      assert.matches(case, r[name][2])
    end
  end)
end)

describe("timers set at load time", function()
  local srv = H.serve("runtime_timers.lua", { workers = 2, env = "TIMERS_AT_LOAD=1", args = { SHARED } })

  it("run in every worker: the timer once with its arguments, the every again and again", function()
    local r = H.call(srv.addr, "/load-results")
    assert.same({ timer = { n = 1, true }, every = { n = 1, true } }, r.r)
    for id = 0, 1 do
      local rec = wait_record(srv, "load-timer:" .. id)
      assert.is_false(rec.premature)
      assert.equal("from the main chunk", rec.a)
      assert.equal(2, rec.b)
    end
    H.wait_for(function()
      return (get(srv, "load-every:0") or 0) >= 3 and (get(srv, "load-every:1") or 0) >= 3
    end, 5, "three runs of the every in each worker")
  end)
end)

describe("a timer set at load time with 300 arguments", function()
  local srv = H.serve("runtime_timers.lua", { workers = 1, env = "TIMERS_MANY_ARGS=300", args = { SHARED } })

  it("runs with all of them", function()
    local rec = wait_record(srv, "many-args:0")
    assert.same({ premature = false, n = 300, sum = 300 * 301 // 2 }, rec)
    H.hello_ok(srv.addr)
  end)
end)

describe("pending timers when the app is reloaded or the worker stops", function()
  after_each(H.cleanup)

  it("SIGHUP: the old app's pending timers run at once, premature, in the old state", function()
    local srv = H.start("runtime_timers.lua", { workers = 1, env = "TIMERS_AT_LOAD=1", args = { SHARED } })
    assert.equal(1, H.call(srv.addr, "/generation").generation)
    assert.same({ n = 1, true }, H.call(srv.addr, "/timer/pending", { key = "hup", delay = 60 }).r)
    H.sleep(0.3)
    assert.is_nil(get(srv, "hup"))
    local mark, t0 = #srv.output(), H.now()
    srv.kill("HUP")
    H.wait_log(srv, mark, "worker 0: reloaded")
    local rec = wait_record(srv, "hup")
    assert.is_true(H.now() - t0 < 3, ("the timer ran %.2f s after SIGHUP"):format(H.now() - t0))
    assert.is_true(rec.premature)
    assert.equal(1, rec.generation) -- the old state's upvalue
    assert.is_true(rec.slept >= 0.09)
    assert.equal(2, H.call(srv.addr, "/generation").generation) -- requests see the new app
    -- the old app's every ran once more, premature; the new app's timers run
    assert.is_true(wait_record(srv, "load-every-premature:1"))
    assert.is_nil(get(srv, "load-every-premature:2"))
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)

  it("SIGTERM: pending timers run at once, premature; a new timer is refused; the process exits 0",
    function()
      local dir = H.tmpdir()
      local srv = H.start("runtime_timers.lua", { workers = 1, dir = dir,
        env = "TIMERS_AT_LOAD=1 TIMERS_DIR=" .. H.quote(dir), args = { SHARED } })
      assert.same({ n = 1, true }, H.call(srv.addr, "/timer/pending", { key = "term", delay = 60 }).r)
      H.sleep(0.2)
      assert.is_false(H.exists(dir .. "/term"))
      local t0 = H.now()
      assert.equal(0, srv.stop())
      assert.is_true(H.now() - t0 < 5, ("stopping took %.2f s"):format(H.now() - t0))
      local src = H.read_file(dir .. "/term")
      assert.truthy(src, "the pending timer did not run before the process exited:\n" .. srv.output())
      local rec = assert(load("return " .. src))()
      assert.is_true(rec.premature)
      assert.is_true(rec.slept >= 0.09, "it could not sleep while the worker stopped")
      assert.same({ n = 2, nil, "the worker is stopping" }, rec.again)
      -- the every set at load time ran once more, premature
      assert.equal("true", H.read_file(dir .. "/load-every-premature:1"))
    end)
end)

describe("--max-timers", function()
  local srv = H.serve("runtime_timers.lua", { workers = 1, options = { ["max-timers"] = "3" }, args = { SHARED } })

  it("caps the pending timers: the fourth gets nil, \"too many pending timers (--max-timers)\"; room comes back",
    function()
      local r = H.call(srv.addr, "/timer/many", { n = 5, delay = 0.2 })
      for i = 1, 3 do assert.same({ n = 1, true }, r.r[i]) end
      for i = 4, 5 do assert.same({ n = 2, nil, "too many pending timers (--max-timers)" }, r.r[i]) end
      H.sleep(0.6) -- they ran: there is room again
      r = H.call(srv.addr, "/timer/many", { n = 3, delay = 0.2 })
      for i = 1, 3 do assert.same({ n = 1, true }, r.r[i]) end
    end)
end)

describe("--timer-timeout", function()
  local srv = H.serve("runtime_timers.lua", { workers = 1, options = { ["timer-timeout"] = "1" }, args = { SHARED } })

  it("stops a timer run that sleeps past it: logged as its budget, its <close> runs, the worker serves on",
    function()
      local mark, t0 = #srv.output(), H.now()
      assert.same({ n = 1, true }, H.call(srv.addr, "/timer/long", { key = "long", pause = 2 }).r)
      local out = H.wait_log(srv, mark, "request budget", 4)
      local took = H.now() - t0
      assert.is_true(took >= 0.9 and took < 2.5, ("stopped after %.2f s"):format(took))
      assert.truthy(out:find("#%d+ TIMER [^\n]*runtime_timers%.lua:%d+: request budget of 1 s spent %(%-%-timer%-timeout%)"), out)
      assert.is_true(get(srv, "long:started"))
      assert.is_true(get(srv, "long:closed"))
      H.hello_ok(srv.addr)
      H.sleep(t0 + 2.5 - H.now()) -- past the end of its sleep: it did not wake
      assert.is_nil(get(srv, "long:woke"))
    end)
end)
