-- spec/runtime_tasks_spec.lua: the cooperative runtime inside a request, on the real scgi-lua with
-- one worker (spec/apps/runtime_tasks.lua): coroutines the handler makes that wait (generators,
-- body readers, nested ones, their status while parked, the CPU guard and the budget inside
-- them), and tasks: scgi.spawn, scgi.wait, scgi.kill, a response that ends with the last task,
-- the budget and a failing handler stopping the tasks.
local H = require "helper"

-- Runs the finishers (H.start_call) and returns their answers, in order.
local function finish_all(pending)
  local out = {}
  for i, f in ipairs(pending) do out[i] = f() end
  return out
end

-- How many times the to-be-closed variable `name` of a stopped task or coroutine was closed.
local function closed(srv, name) return H.call(srv.addr, "/closed", { name = name }).count end

describe("coroutines the handler makes, waiting inside a request", function()
  local srv = H.serve("runtime_tasks.lua", { workers = 1, options = { ["cpu-limit"] = "1" } })

  it("a coroutine.wrap generator that sleeps between values: five at once on one worker", function()
    local t0 = H.now()
    local pending = {}
    for i = 1, 5 do pending[i] = H.start_call(srv.addr, "/co/generator", { n = 3, pause = 0.3 }) end
    -- while they sleep, the worker answers another request at once
    local t1 = H.now()
    H.hello_ok(srv.addr)
    assert.is_true(H.now() - t1 < 0.25, ("/hello took %.2f s"):format(H.now() - t1))
    for _, r in ipairs(finish_all(pending)) do
      assert.same({ 1, 2, 3 }, r.values)
      for i, at in ipairs(r.times) do
        assert.is_true(at >= 0.3 * i - 0.02, ("value %d came after %.3f s"):format(i, at))
      end
    end
    -- one after the other: 5 x 0.9 s
    local took = H.now() - t0
    assert.is_true(took < 2.2, ("five generators took %.2f s together: they did not overlap"):format(took))
  end)

  it("a coroutine that reads the body parks the request until the rest arrives", function()
    local body = ("0123456789abcdef"):rep(320) -- 5120 bytes
    local head = H.encode(H.nginx_headers("POST", "/co/read-body"), body)
    local s = assert(H.connect(srv.addr, 10))
    assert(s:send(head .. body:sub(1, 2000)))
    H.sleep(0.3)
    -- the request waits in its coroutine's client:read: the one worker serves another
    local t1 = H.now()
    H.hello_ok(srv.addr)
    assert.is_true(H.now() - t1 < 0.25, ("/hello took %.2f s"):format(H.now() - t1))
    assert(s:send(body:sub(2001)))
    local raw, err, partial = s:receive("*a")
    s:close()
    local status, _, got, whole = H.parse(raw or partial, err)
    local r = H.decode(status, got, whole, "/co/read-body")
    assert.equal(#body, r.len)
    assert.equal(body, r.body)
    assert.equal("end", r.last)
    -- between chunks the coroutine is suspended (it yielded one); at the end it is dead
    assert.equal("dead", r.statuses[#r.statuses])
    for i = 1, #r.statuses - 1 do assert.equal("suspended", r.statuses[i]) end
    assert.equal(#r.statuses - 1, r.chunks)
  end)

  it("client:write parks inside a generator while the web server does not read: 8 MiB arrive whole",
    function()
      local s = H.send_get(srv.addr, "/co/write-big?mb=8", 20)
      H.sleep(0.5) -- not reading: the socket fills and the write in the coroutine parks
      local t1 = H.now()
      H.hello_ok(srv.addr)
      assert.is_true(H.now() - t1 < 0.25, ("/hello took %.2f s"):format(H.now() - t1))
      local raw, err, partial = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw or partial, err)
      assert.equal(200, status)
      assert.equal(8 * 1048576, #body)
      assert.equal(("0123456789abcdef"):rep(4096), body:sub(-65536))
    end)

  it("nested: a coroutine resumes another that sleeps; coroutine.yield keeps its meaning", function()
    local r = H.call(srv.addr, "/co/nested")
    assert.same({ "true:inner1,inner2,inner done", "true:middle done" }, r.out)
    assert.is_true(r.elapsed >= 0.28, "the sleeps did not happen: " .. r.elapsed)
  end)

  it("a coroutine parked in a wait is \"normal\"; resuming or closing it fails, then it goes on",
    function()
      local r = H.call(srv.addr, "/co/parked-status")
      assert.equal("normal", r.seen.status)
      assert.same({ n = 2, false, "cannot resume non-suspended coroutine" }, r.seen.resume)
      assert.same({ n = 2, false, "cannot close a normal coroutine" }, r.seen.close)
      -- the wrap parked in the handler is resumed by the task: that raises in the task
      assert.same({ n = 2, false, "cannot resume non-suspended coroutine" }, r.second)
      -- the handler's own resume came back where it was
      assert.same({ n = 2, true, "woke" }, r.first)
      assert.equal("dead", r.after)
      -- the task got to run the wrapped one to its end itself (it was suspended for it)
      assert.same({ n = 2, true, "wrapped woke" }, r.seen.wrapped)
    end)

  it("the same from another request: the coroutine is \"normal\" while a request waits in it",
    function()
      local finish = H.start_call(srv.addr, "/co/shared-park", { pause = 0.6 })
      H.sleep(0.15)
      local p = H.call(srv.addr, "/co/shared-probe")
      assert.equal("normal", p.status)
      assert.same({ n = 2, false, "cannot resume non-suspended coroutine" }, p.resume)
      local r = finish()
      assert.same({ n = 2, true, "done" }, r.result)
      assert.equal("dead", r.status)
    end)

  it("the CPU guard stops a loop inside a wrap that waited first: 500, the worker serves on",
    function()
      local t0 = H.now()
      local out = H.get_500(srv, "/co/loop-after-wait", "handler error")
      assert.is_true(H.now() - t0 < 3, ("the 500 took %.2f s"):format(H.now() - t0))
      assert.truthy(out:find("GET /co/loop-after-wait: handler error: CPU limit of 1.0 s exceeded", 1,
        true), out)
      H.hello_ok(srv.addr)
    end)
end)

describe("the request budget inside a coroutine the handler made", function()
  local srv = H.serve("runtime_tasks.lua", { workers = 1, options = { ["request-timeout"] = "1" } })

  it("a wrap that sleeps past --request-timeout: 504 after about a second, its <close> runs", function()
    local mark, t0 = #srv.output(), H.now()
    local status = H.request(srv.addr, "GET", H.uri("/co/sleep", { name = "co-budget", pause = 5 }))
    local took = H.now() - t0
    assert.equal(504, status)
    assert.is_true(took >= 0.9 and took < 2, ("the 504 came after %.2f s"):format(took))
    local out = H.wait_log(srv, mark, "request budget of 1 s spent")
    assert.truthy(out:find("GET /co/sleep?name=co-budget&pause=5: request budget of 1 s spent", 1, true), out)
    assert.equal(1, closed(srv, "co-budget"))
    H.hello_ok(srv.addr)
  end)
end)

describe("tasks: scgi.spawn, scgi.wait, scgi.kill", function()
  local srv = H.serve("runtime_tasks.lua", { workers = 1, options = { ["cpu-limit"] = "1" } })

  it("wait gives true and every result (nils too), again on a second wait; tostring says the state",
    function()
      local r = H.call(srv.addr, "/task/results")
      assert.equal("userdata", r.type)
      assert.equal("scgi.task (running)", r.before)
      assert.same({ n = 5, true, 5, "x", nil, false }, r.first)
      assert.same(r.first, r.second)
      assert.equal("scgi.task (ended)", r.after)
    end)

  it("a task starts on the next loop turn, not inside scgi.spawn; spawn checks its argument", function()
    local r = H.call(srv.addr, "/task/starts-later")
    assert.same({ "handler", "task", "handler again" }, r.log)
    assert.same({ n = 1, true }, r.waited)
    assert.is_false(r.bad[1])
    assert.matches("bad argument #1 to '[%w.]*spawn' %(function expected, got number%)", r.bad[2])
  end)

  it("a task's error is wait's result and is logged; the request still answers 200", function()
    local mark = #srv.output()
    local r = H.call(srv.addr, "/task/error")
    assert.is_false(r.r[1])
    assert.matches("runtime_tasks%.lua:%d+: task boom$", r.r[2])
    assert.is_false(r.ok2)
    assert.equal(7, r.code) -- an error value that is a table comes back as it is
    local out = H.wait_log(srv, mark, "task boom")
    assert.truthy(out:find("#%d+ GET /task/error: task error: [^\n]*runtime_tasks%.lua:%d+: task boom\n"), out)
    assert.truthy(out:find("#%d+ GET /task/error: task error: %(error object is a table value%)"), out)
    assert.is_nil(out:find("handler error", 1, true), out)
    H.hello_ok(srv.addr)
  end)

  it("a task that raises after its handler returned: logged with the request's method and URI", function()
    local mark = #srv.output()
    assert.equal("the handler answered\n", (H.request_ok(srv.addr, "GET", "/task/error-after-return?q=1")))
    local out = H.wait_log(srv, mark, "late task boom")
    assert.truthy(out:find("#%d+ GET /task/error%-after%-return%?q=1: task error: [^\n]*: late task boom\n"), out)
    H.hello_ok(srv.addr)
  end)

  it("kill: true, the task's <close> runs, its result is false, \"killed\"; kill again: nil, \"already finished\"",
    function()
      local r = H.call(srv.addr, "/task/kill")
      assert.same({ n = 1, true }, r.killed)
      assert.same({ n = 2, false, "killed" }, r.waited)
      assert.same({ n = 2, false, "killed" }, r.waited_again)
      assert.same({ n = 2, nil, "already finished" }, r.again)
      assert.equal("scgi.task (ended)", r.tostring)
      assert.equal(1, r.closed)
      assert.is_true(r.elapsed < 0.1, "the killed task was waited for: " .. r.elapsed)
    end)

  it("a task killed before it started never runs", function()
    local r = H.call(srv.addr, "/task/kill-unstarted")
    assert.same({ n = 3, true, "scgi.task (running)", true }, r.killer)
    assert.same({ n = 2, false, "killed" }, r.waited)
    assert.is_false(r.ran)
  end)

  it("after scgi.kill the handler can still wait (scgi.sleep)", function()
    local r = H.call(srv.addr, "/task/kill-then-sleep")
    assert.same({ n = 1, true }, r.killed)
    assert.same({ n = 1, true }, r.slept)
  end)

  it("wait on a task that ended already answers at once, as often as asked", function()
    local r = H.call(srv.addr, "/task/wait-ended")
    assert.same({ n = 2, true, "quick" }, r.a)
    assert.same(r.a, r.b)
    assert.is_true(r.elapsed < 0.05, "wait took " .. r.elapsed)
    assert.equal("scgi.task (ended)", r.tostring)
  end)

  it("a task cannot wait for or kill itself (both raise); a task can wait for another", function()
    local r = H.call(srv.addr, "/task/self")
    assert.same({ n = 2, false, "a task cannot wait for itself" }, r.wait)
    assert.same({ n = 2, false, "a task cannot kill itself" }, r.kill)
    assert.same({ n = 3, true, true, "other" }, r.chained)
  end)

  it("five tasks that sleep 1 s each end together on one worker, in well under 5 s", function()
    local t0 = H.now()
    local r = H.call(srv.addr, "/task/concurrent", { n = 5, pause = 1 })
    local took = H.now() - t0
    for i = 1, 5 do assert.same({ n = 2, true, i * 10 }, r.results[i]) end
    assert.is_true(r.elapsed >= 0.95, "the tasks did not sleep: " .. r.elapsed)
    assert.is_true(took < 2.5, ("five 1 s tasks took %.2f s: they did not overlap"):format(took))
  end)

  it("a task writes after the handler returned: the response ends with the last task", function()
    local t0 = H.now()
    assert.equal("from the handler\nfrom the task\ntask done\n",
      (H.request_ok(srv.addr, "GET", "/task/after-return")))
    assert.is_true(H.now() - t0 >= 0.45, "the response ended before the task")
  end)

  it("a handler that returns without writing while its task writes the response: 200", function()
    assert.equal("written by a task\n", (H.request_ok(srv.addr, "GET", "/task/writes-all")))
  end)

  it("a task that calls coroutine.yield with no coroutine of its own to yield to fails, saying so", function()
    local r = H.call(srv.addr, "/task/plain-yield")
    assert.same({ n = 2, false, "the task yielded outside of an scgi call" }, r.r)
    H.hello_ok(srv.addr)
  end)

  it("inside a task: a user coroutine that waits, and a task spawned from a task; wait inside a wrap", function()
    local r = H.call(srv.addr, "/task/in-task")
    assert.same({ n = 3, true, { 1, 2, 3 }, "inner" }, r.r)
  end)

  it("the CPU guard stops a looping task: its result says so; the handler answers", function()
    local mark, t0 = #srv.output(), H.now()
    local r = H.call(srv.addr, "/task/loop")
    assert.is_true(H.now() - t0 < 3, ("took %.2f s"):format(H.now() - t0))
    assert.same({ n = 2, false, "CPU limit exceeded (the task ran Lua without yielding)" }, r.r)
    assert.equal("the handler went on", r.after)
    H.wait_log(srv, mark, "GET /task/loop: task error: CPU limit exceeded")
    H.hello_ok(srv.addr)
  end)

  it("a failing handler stops its tasks: their <close> runs, their result is false, \"stopped: its request ended\"",
    function()
      local mark = #srv.output()
      local status = H.request(srv.addr, "GET", "/task/handler-error?name=herr")
      assert.equal(500, status)
      H.wait_log(srv, mark, "GET /task/handler-error?name=herr: handler error: ")
      assert.equal(2, closed(srv, "herr"))
      for i = 1, 2 do
        local k = H.call(srv.addr, "/kept", { name = "herr" .. i })
        assert.equal("scgi.task (ended)", k.tostring)
        assert.same({ n = 3, true, false, "stopped: its request ended" }, k.wait)
        assert.same({ n = 3, true, nil, "already finished" }, k.kill)
      end
      -- the tasks did not go on (they would have written after 5 s): nothing more was logged
      assert.is_nil(H.log_since(srv, mark):find("task error", 1, true))
      H.hello_ok(srv.addr)
    end)

  it("a task of another request cannot be waited for or killed while it runs", function()
    local finish = H.start_request(srv.addr, "/task/hold", { name = "other", pause = 0.6 })
    H.sleep(0.2)
    local r = H.call(srv.addr, "/kept", { name = "other" })
    assert.equal("scgi.task (running)", r.tostring)
    assert.same({ n = 2, false, "the task belongs to another request" }, r.wait)
    assert.same({ n = 2, false, "the task belongs to another request" }, r.kill)
    local status, _, body = finish()
    assert.equal(200, status)
    assert.equal("held\n", body)
  end)

  it("a task spawned with 100 and 5,000 arguments gets them all; the worker serves on", function()
    for _, n in ipairs({ 100, 5000 }) do
      local r = H.call(srv.addr, "/task/many-args", { n = n })
      assert.same({ n = 3, true, n, n * (n + 1) // 2 }, r.waited)
    end
    H.hello_ok(srv.addr)
  end)

  it("client:close() wakes a task parked in client:read or client:write at once: nil, \"closed\"", function()
    for _, what in ipairs({ "read", "write" }) do
      local name = "close-" .. what
      local u = H.uri("/task/close-wakes", { name = name, what = what })
      local s = assert(H.connect(srv.addr, 10))
      -- a body of 100 bytes announced, none sent: the read waits
      local head = H.encode(H.nginx_headers("POST", u), ("b"):rep(100))
      assert(s:send(head))
      if what == "write" then H.sleep(0.5) end -- not reading: the write parks
      local raw, err, partial = s:receive("*a")
      s:close()
      assert.is_truthy(raw or partial, err)
      local r = H.wait_for(function() return H.call(srv.addr, "/task/woken", { name = name }).r end, 5,
        "the task parked in client:" .. what .. " to end")
      assert.same({ true, nil, "closed" }, { r[1], r[2], r[3] })
      assert.equal(4, r.n)
      assert.is_true(r[4] < 2, ("client:%s waited %.2f s"):format(what, r[4]))
    end
    H.hello_ok(srv.addr)
  end)

  it("scgi.spawn outside a request (the app file's main chunk) raises", function()
    local r = H.call(srv.addr, "/task/at-load")
    assert.is_false(r.r[1])
    assert.matches("scgi.spawn can only be called from a request's handler", r.r[2], 1, true)
  end)
end)

describe("tasks and the request budget", function()
  local srv = H.serve("runtime_tasks.lua", { workers = 1, options = { ["request-timeout"] = "1" } })

  for _, case in ipairs({
    { mode = "wait", what = "the handler waits for them" },
    { mode = "return", what = "the handler returned without writing" },
  }) do
    it("tasks sleeping past --request-timeout are all stopped, the client gets 504 (" .. case.what .. ")",
      function()
        local name = "budget-" .. case.mode
        local mark, t0 = #srv.output(), H.now()
        local status, _, body = H.request(srv.addr, "GET", H.uri("/task/budget", { name = name, mode = case.mode }))
        local took = H.now() - t0
        assert.equal(504, status, body)
        assert.is_true(took >= 0.9 and took < 2, ("the 504 came after %.2f s"):format(took))
        H.wait_log(srv, mark, ": request budget of 1 s spent (--request-timeout); the handler is stopped")
        assert.equal(3, closed(srv, name))
        for i = 1, 3 do
          local k = H.call(srv.addr, "/kept", { name = name .. i })
          assert.equal("scgi.task (ended)", k.tostring)
          assert.is_false(k.wait[2])
        end
        H.hello_ok(srv.addr)
      end)
  end

  it("after the head was sent, the budget stops the tasks and cuts the response (no 504)", function()
    local t0 = H.now()
    assert.equal("head sent\n",
      (H.request_ok(srv.addr, "GET", H.uri("/task/budget", { name = "budget-head", mode = "head" }))))
    assert.is_true(H.now() - t0 < 2)
    assert.equal(3, closed(srv, "budget-head"))
  end)
end)

describe("a handler that kills a task and then loops", function()
  after_each(H.cleanup)

  it("is still stopped by the CPU guard (500) within a few seconds", function()
    local srv = H.start("runtime_tasks.lua", { workers = 1,
      options = { ["cpu-limit"] = "1", ["request-timeout"] = "3" } })
    -- a serving process stuck in the loop must not outlive the case
    local serving = H.serving_pid(srv)
    finally(function() os.execute("kill -KILL " .. serving .. " 2>/dev/null") end)
    local s = assert(H.connect(srv.addr, 6))
    local t0 = H.now()
    assert(s:send((H.encode(H.nginx_headers("GET", "/task/kill-then-loop")))))
    local raw, err, partial = s:receive("*a")
    s:close()
    local took = H.now() - t0
    local status = H.parse(raw or partial, err)
    assert.is_true(status == 500 or status == 504, ("no answer after %.1f s (%s); the log:\n%s"):format(
      took, tostring(err), srv.output()))
    assert.is_true(took < 4, ("the answer came after %.1f s"):format(took))
  end)
end)
