-- spec/hostile_spec.lua: handlers that misbehave (error objects with raising, yielding or looping
-- __tostring, <close> that loops after the guard fired, loops in coroutines the handler made,
-- nested server calls), and stop signals while a worker runs Lua: the request gets a clear
-- answer, the worker serves on, and the process stops when told.
local H = require "helper"

describe("error objects with hostile metamethods", function()
  local srv = H.serve("hostile.lua", { options = { ["cpu-limit"] = "1" } })

  it("a __tostring that raises: 500, the reason logged, the process alive", function()
    local mark = #srv.output()
    assert.equal(500, (H.request(srv.addr, "GET", "/tostring-raises")))
    local out = H.wait_log(srv, mark, "handler error")
    assert.truthy(out:find("GET /tostring-raises: handler error: (error object is a table value; " ..
      "its __tostring raised: ", 1, true), out)
    assert.truthy(out:find("attempt to concatenate a nil value (field 'code')", 1, true), out)
    assert.is_true(srv.alive())
    H.hello_ok(srv.addr)
  end)

  it("a __tostring that returns a number: the number is the message", function()
    local mark = #srv.output()
    assert.equal(500, (H.request(srv.addr, "GET", "/tostring-number")))
    assert.truthy(H.wait_log(srv, mark, "handler error"):find("/tostring-number: handler error: 42\n",
      1, true))
    H.hello_ok(srv.addr)
  end)

  it("a __tostring that yields: 500, and the failed yield is the reason", function()
    local mark = #srv.output()
    assert.equal(500, (H.request(srv.addr, "GET", "/tostring-yields")))
    local out = H.wait_log(srv, mark, "handler error")
    assert.truthy(out:find("its __tostring raised: attempt to yield", 1, true), out)
    H.hello_ok(srv.addr)
  end)

  it("a __tostring that loops is stopped by the guard within about a second", function()
    local mark, t0 = #srv.output(), H.now()
    assert.equal(500, (H.request(srv.addr, "GET", "/tostring-loops")))
    assert.is_true(H.now() - t0 < 3, "took " .. H.now() - t0)
    local out = H.wait_log(srv, mark, "handler error")
    assert.truthy(out:find("its __tostring raised: clean-up of a stopped request took too long", 1,
      true), out)
    H.hello_ok(srv.addr)
  end)
end)

describe("the CPU guard against to-be-closed variables and user coroutines", function()
  local srv = H.serve("hostile.lua", { options = { ["cpu-limit"] = "1" } })

  for _, route in ipairs({ "/close-loops", "/close-loops-after-error" }) do
    it(route .. ": the <close> that loops is stopped too, the request abandoned, the worker serves on",
      function()
        local mark, t0 = #srv.output(), H.now()
        assert.equal(500, (H.request(srv.addr, "GET", route)))
        assert.is_true(H.now() - t0 < 2.5, "the 500 took " .. H.now() - t0)
        local out = H.wait_log(srv, mark, "the request is abandoned", 5)
        assert.truthy(out:find("GET " .. route .. ": its clean-up", 1, true), out)
        assert.is_true(H.now() - t0 < 4, "the clean-up was stopped after " .. H.now() - t0)
        H.hello_ok(srv.addr)
      end)
  end

  it("pcall(coroutine.wrap(an endless loop)) cannot keep the handler going: 500", function()
    local mark = #srv.output()
    local status, _, body = H.request(srv.addr, "GET", "/wrap-loop")
    assert.equal(500, status, body)
    assert.truthy(H.wait_log(srv, mark, "handler error"):find("CPU limit of 1.0 s exceeded", 1, true))
    H.hello_ok(srv.addr)
  end)

  it("a loop inside a generator the handler iterates: 500", function()
    local status, _, body = H.request(srv.addr, "GET", "/generator-loop")
    assert.equal(500, status, body)
    H.hello_ok(srv.addr)
  end)
end)

describe("the debug library against the bindings' type checks", function()
  local srv = H.serve("hostile.lua", { options = { ["cpu-limit"] = "1" } })

  -- GET route: every line "name=false,message"; returns them by name.
  local function calls(route)
    local status, _, body = H.request(srv.addr, "GET", route)
    assert.equal(200, status, route .. " answered " .. tostring(status) .. ": the process died?")
    local out = {}
    for name, okc, msg in body:gmatch("([%w%-]+)=(%a+),([^\n]*)") do out[name] = { okc == "true", msg } end
    return out
  end

  it("a file handle given a client's or a task's metatable is refused: bad argument, no crash", function()
    local r = calls("/forge-client")
    for _, name in ipairs({ "write", "closed", "tostring" }) do
      assert.is_false(r[name][1], name)
      assert.matches("scgi.client expected, got another value given its metatable", r[name][2], 1, true)
    end
    assert.is_true(r.close[1]) -- __close (and __gc) leave such a value alone
    r = calls("/forge-task")
    assert.matches("scgi.task expected", r.wait[2], 1, true)
    assert.matches("scgi.task expected", r.kill[2], 1, true)
    assert.is_not_nil(r.uservalue) -- a table of results that is not one: no crash
    assert.is_false(r["uservalue-userdata"][1])
    assert.matches("the task's results are gone", r["uservalue-userdata"][2], 1, true)
    H.hello_ok(srv.addr)
  end)

  it("... a shared dictionary's, a socket's, a TLS session's or a block box's (their __gc too)", function()
    local r = calls("/forge-shared")
    assert.matches("scgi.shared_dict expected", r.get[2], 1, true)
    assert.is_true(r["keys-box"][1])
    r = calls("/forge-socket")
    assert.matches("scgi.socket expected", r.send[2], 1, true)
    assert.matches("scgi.socket expected", r.close[2], 1, true)
    assert.is_true(r.session[1])
    H.sleep(0.2)
    H.hello_ok(srv.addr)
    assert.is_true(srv.alive())
  end)

  it("the request's first frame (debug.getinfo) and a wrap whose coroutine was replaced raise", function()
    local r = calls("/forge-frames")
    assert.is_false(r["first-frame"][1])
    assert.matches("cannot be called", r["first-frame"][2], 1, true)
    assert.is_false(r["first-frame-nothing"][1])
    assert.is_false(r["wrap-upvalue"][1])
    assert.matches("the coroutine was replaced", r["wrap-upvalue"][2], 1, true)
    H.hello_ok(srv.addr)
  end)

  it("loadfile, dofile and require's searcher whose app upvalue was replaced raise", function()
    local r = calls("/forge-loaders")
    for _, name in ipairs({ "dofile", "loadfile", "searcher" }) do
      assert.is_false(r[name][1], name)
      assert.matches("lost its app", r[name][2], 1, true)
    end
    H.hello_ok(srv.addr)
  end)
end)

describe("server calls where none belong", function()
  after_each(H.cleanup)

  it("scgi.handle_requests from a handler raises a clear error", function()
    local srv = H.start("hostile.lua")
    local status, _, body = H.request(srv.addr, "GET", "/nested-serve")
    assert.equal(200, status)
    assert.matches("^false .*cannot be called inside a running server", body)
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)

  it("scgi.handle_requests in the app file at load time: exit 1 naming the call", function()
    local srv = H.start("hostile.lua", { expect_fail = true, env = "HOSTILE_SERVE_AT_LOAD=1" })
    assert.equal(1, srv.wait(10))
    H.wait_log(srv, 0, "cannot be called inside a running server")
  end)
end)

describe("a second stop signal while a worker runs Lua", function()
  after_each(H.cleanup)

  local function stop_twice(srv)
    srv.kill("TERM")
    H.sleep(0.5) -- past the 250 ms in which stop signals count as one
    assert.is_true(srv.alive())
    local t0 = H.now()
    srv.kill("TERM")
    local rc = srv.wait(10)
    return rc, H.now() - t0
  end

  it("with --cpu-limit 0 and a handler in an endless loop: the process ends within a second", function()
    local srv = H.start("hostile.lua", { options = { ["cpu-limit"] = "0" } })
    local s = H.send_get(srv.addr, "/loop")
    H.sleep(0.3)
    local rc, took = stop_twice(srv)
    assert.is_true(took < 1.5, "exited after " .. took .. " s")
    assert.equal(0, rc)
    local data, _, partial = s:receive("*a")
    s:close()
    assert.equal(503, H.parse(data or partial))
  end)

  it("with a worker looping in a __gc (where no hook runs): the process ends within a second", function()
    local srv = H.start("hostile.lua")
    local s = H.send_get(srv.addr, "/gc-loop")
    H.sleep(0.3)
    local rc, took = stop_twice(srv)
    s:close()
    assert.is_true(took < 1.8, "exited after " .. took .. " s")
    assert.equal(1, rc)
    assert.truthy(srv.output():find("did not stop within 1 s of the second signal", 1, true))
  end)
end)
