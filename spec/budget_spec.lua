-- spec/budget_spec.lua: scgi.sleep, --request-timeout, --cpu-limit, --memory-limit,
-- client:closed() and scgi.worker(), against the real scgi-lua running spec/apps/budget.lua.
local H = require "helper"
local socket = require "socket"

-- scgi.worker() of the worker, read through the /worker route (whose own request counts).
local function worker(addr)
  return assert(load((H.request_ok(addr, "GET", "/worker"))))()
end

-- What /sleep-then-write or /sleep-then-closed recorded under id, or nil while nothing was.
local function result(addr, id)
  return assert(load((H.request_ok(addr, "GET", "/result?id=" .. id))))()
end

-- Opens a connection and sends a GET for uri; the answer is read by collect.
local function open(addr, uri)
  local s = H.send_get(addr, uri, 5)
  s:settimeout(0)
  return { s = s, uri = uri, sent = H.now(), parts = {} }
end

-- Reads the answers of the opened requests all at once until each connection is closed by the
-- server (bounded by timeout); sets r.raw, r.status, r.body, r.done (when it closed) and r.took.
local function collect(reqs, timeout)
  local pending, deadline = {}, H.now() + (timeout or 10)
  for _, r in ipairs(reqs) do pending[r.s] = r end
  while next(pending) do
    local list = {}
    for s in pairs(pending) do list[#list + 1] = s end
    local left = deadline - H.now()
    if left <= 0 then
      local n = 0
      for _ in pairs(pending) do n = n + 1 end
      for s in pairs(pending) do s:close() end
      error(("%d of %d requests still unanswered after %g s"):format(n, #reqs, timeout or 10), 2)
    end
    local ready = socket.select(list, nil, math.min(left, 0.5))
    for _, s in ipairs(ready) do
      local r = pending[s]
      while r do
        local d, err, partial = s:receive(65536)
        local chunk = d or partial
        if chunk and #chunk > 0 then r.parts[#r.parts + 1] = chunk end
        if err == "timeout" then break end
        if err then
          r.done, r.err = H.now(), err ~= "closed" and err or nil
          r.took = r.done - r.sent
          r.raw = table.concat(r.parts)
          r.status, _, r.body = H.parse(r.raw)
          pending[s] = nil
          s:close()
          break
        end
      end
    end
  end
  return reqs
end

describe("scgi.sleep on one worker", function()
  local srv = H.serve("budget.lua")

  it("scgi.worker() describes the worker running the handler", function()
    local w = worker(srv.addr)
    assert.equal(0, w.id)
    assert.equal(1, w.active_requests) -- the /worker request itself
    assert.equal(1, w.connections)
    assert.is_true(w.requests >= 0 and w.errors >= 0 and w.connections >= 1)
    assert.equal(1, w.active_connections)
    assert.is_true(w.lua_memory > 0, "memory " .. tostring(w.lua_memory))
    assert.equal(0, w.lua_memory_limit) -- no --memory-limit
  end)

  it("parks a request sleeping 2 s while 100 other requests finish promptly", function()
    local sleeper = open(srv.addr, "/sleep?s=2")
    local others = {}
    for i = 1, 100 do others[i] = open(srv.addr, "/hello") end
    collect(others, 5)
    collect({ sleeper }, 5)
    for i, r in ipairs(others) do
      assert.equal(200, r.status, "request " .. i)
      assert.equal("Hello world\n", r.body)
      assert.is_true(r.took < 0.5, ("request %d took %.3f s"):format(i, r.took))
      assert.is_true(r.done < sleeper.done, "request " .. i .. " finished after the sleeper")
    end
    assert.equal(200, sleeper.status)
    assert.equal("slept 2", sleeper.body)
    assert.is_true(sleeper.took >= 1.9 and sleeper.took < 3, ("the sleeper took %.3f s"):format(sleeper.took))
  end)

  it("runs 200 concurrent 1 s sleeps in about 1 s in all", function()
    local t0 = H.now()
    local reqs = {}
    for i = 1, 200 do reqs[i] = open(srv.addr, "/sleep?s=1") end
    collect(reqs, 10)
    local took = H.now() - t0
    for i, r in ipairs(reqs) do
      assert.equal(200, r.status, "request " .. i)
      assert.equal("slept 1", r.body)
      assert.is_true(r.took >= 0.95, ("request %d took only %.3f s"):format(i, r.took))
    end
    assert.is_true(took < 3, ("200 sleeps took %.3f s in all"):format(took))
    H.wait_for(function() return worker(srv.addr).active_requests == 1 end, 5, "the sleepers to be freed")
  end)

  it("scgi.sleep(1) parks for 1 s even after the handler worked 0.8 s without yielding", function()
    local status, _, body = H.request(srv.addr, "GET", "/spin-sleep?ms=800&s=1")
    assert.equal(200, status)
    local slept = assert(tonumber(body))
    assert.is_true(slept >= 0.99, ("scgi.sleep(1) returned after %.3f s"):format(slept))
  end)

  it("scgi.sleep works under pcall in the handler's own coroutine", function()
    assert.equal("pcall=true err=nil", (H.request_ok(srv.addr, "GET", "/sleep-in-pcall")))
  end)

  it("scgi.sleep in a coroutine the handler created parks the request and comes back there", function()
    local t0 = H.now()
    assert.equal("pcall=true err=slept", (H.request_ok(srv.addr, "GET", "/sleep-in-coroutine")))
    assert.is_true(H.now() - t0 >= 0.05)
    H.hello_ok(srv.addr)
  end)
end)

describe("scgi.sleep outside a request", function()
  after_each(H.cleanup)

  it("at load time: the program exits 1 with a message naming scgi.sleep", function()
    local proc = H.start("budget.lua", { env = "BUDGET_SLEEP_AT_LOAD=1", expect_fail = true })
    assert.equal(1, proc.wait(10))
    local out = proc.output()
    assert.matches("scgi%.sleep", out)
    assert.matches("cannot load [^\n]*budget%.lua", out)
    assert.is_nil(out:find("listening on", 1, true))
  end)
end)

describe("--cpu-limit 1", function()
  local srv = H.serve("budget.lua", { options = { ["cpu-limit"] = "1" } })

  -- The looping request gets its 500 within the limit plus slack; requests sent to the worker
  -- while it loops complete afterwards; the log names the method and URI; the worker goes on.
  local function stopped(uri)
    local errors = worker(srv.addr).errors
    local mark = #srv.output()
    local loop = open(srv.addr, uri)
    H.sleep(0.2) -- the worker is in the loop now
    local queued = {}
    for i = 1, 5 do queued[i] = open(srv.addr, "/hello") end
    collect({ loop }, 6)
    collect(queued, 5)
    assert.equal(500, loop.status)
    assert.equal("500 Internal Server Error\n", loop.body)
    assert.is_true(loop.took >= 0.9 and loop.took < 3, ("the 500 came after %.3f s"):format(loop.took))
    for i, r in ipairs(queued) do
      assert.equal(200, r.status, "queued request " .. i)
      assert.equal("Hello world\n", r.body)
      assert.is_true(r.done >= loop.done - 0.05, "a queued request finished during the loop")
      assert.is_true(r.done - loop.done < 2, "a queued request took long after the loop ended")
    end
    H.wait_log_match(srv, mark, "GET " .. uri:gsub("%p", "%%%0") .. ": handler error: [^\n]*CPU limit")
    H.hello_ok(srv.addr)
    local w = worker(srv.addr)
    assert.equal(1, w.active_requests)
    assert.equal(errors + 1, w.errors)
  end

  it("stops an endless loop", function() stopped("/loop") end)

  it("stops an endless loop whose inner loop is protected by pcall", function() stopped("/pcall-loop") end)

  it("stops an endless loop that catches errors with coroutine.resume", function()
    stopped("/resume-loop")
  end)

  it("stops a loop of 3 ms C calls within half a second of the limit", function()
    local mark = #srv.output()
    local loop = collect({ open(srv.addr, "/c-loop") }, 6)[1]
    assert.equal(500, loop.status)
    assert.is_true(loop.took >= 0.9 and loop.took <= 1.5, ("the 500 came after %.3f s"):format(loop.took))
    H.wait_log_match(srv, mark, "GET /c%-loop: handler error: [^\n]*CPU limit")
    H.hello_ok(srv.addr)
  end)

  it("does not stop a handler whose busy stretches are each under the limit", function()
    local t0 = H.now()
    assert.equal("segments done", (H.request_ok(srv.addr, "GET", "/spin-segments?n=3&ms=600")))
    assert.is_true(H.now() - t0 >= 1.7) -- 1.8 s of work in all, over the 1 s limit
  end)
end)

describe("--request-timeout 1", function()
  local srv = H.serve("budget.lua", { options = { ["request-timeout"] = "1", ["cpu-limit"] = "1" } })

  -- GET uri, read to its end without an error; returns the raw answer and the seconds it took.
  local function timed_get(uri)
    local t0 = H.now()
    local raw, err = H.raw(srv.addr, (H.encode(H.nginx_headers("GET", uri))), 10)
    local took = H.now() - t0
    assert.is_nil(err)
    return raw, took
  end

  it("lets a request within its budget finish", function()
    assert.equal("slept 0.3", (H.request_ok(srv.addr, "GET", "/sleep?s=0.3")))
  end)

  it("answers 504 in about 1 s to a handler sleeping 5 s, and logs it", function()
    local mark = #srv.output()
    local raw, took = timed_get("/sleep?s=5")
    assert.equal("Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\r\n504 Gateway Timeout\n", raw)
    assert.is_true(took >= 0.9 and took < 2.5, ("the 504 came after %.3f s"):format(took))
    H.wait_log_match(srv, mark, "GET /sleep%?s=5: request budget of 1 s spent")
    local w = worker(srv.addr)
    assert.equal(1, w.active_requests) -- the coroutine was discarded
    assert.is_true(w.errors >= 1)
    H.hello_ok(srv.addr)
  end)

  it("cuts the connection of a handler that flushed part of its response, then slept past the budget", function()
    local mark = #srv.output()
    local raw, took = timed_get("/partial-sleep?s=5")
    assert.equal("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial", raw) -- no 504, no rest
    assert.is_true(took >= 0.9 and took < 2.5, ("cut after %.3f s"):format(took))
    H.wait_log_match(srv, mark, "GET /partial%-sleep%?s=5: request budget of 1 s spent")
    assert.equal(1, worker(srv.addr).active_requests)
    H.hello_ok(srv.addr)
  end)

end)

describe("--request-timeout 1 with --cpu-limit 3", function()
  local srv = H.serve("budget.lua", { options = { ["request-timeout"] = "1", ["cpu-limit"] = "3" } })

  it("answers 504 when the budget is spent while the handler loops without yielding", function()
    local mark = #srv.output()
    local loop = collect({ open(srv.addr, "/loop") }, 6)[1]
    assert.equal(504, loop.status, ("got %s after %.3f s"):format(tostring(loop.status), loop.took))
    assert.is_true(loop.took < 2, ("the 504 came after %.3f s"):format(loop.took))
    H.wait_log_match(srv, mark, "GET /loop: request budget of 1 s spent")
    H.hello_ok(srv.addr)
  end)
end)

describe("--request-timeout 2 with the default --cpu-limit", function()
  local srv = H.serve("budget.lua", { options = { ["request-timeout"] = "2" } })

  it("answers 504 within half a second of the budget to a loop of 3 ms C calls", function()
    local mark = #srv.output()
    local loop = collect({ open(srv.addr, "/c-loop") }, 6)[1]
    assert.equal(504, loop.status, ("got %s after %.3f s"):format(tostring(loop.status), loop.took))
    assert.is_true(loop.took >= 1.9 and loop.took <= 2.5, ("the 504 came after %.3f s"):format(loop.took))
    H.wait_log_match(srv, mark, "GET /c%-loop: request budget of 2 s spent")
    H.hello_ok(srv.addr)
  end)
end)

describe("--request-timeout 1 and a handler whose __close never returns", function()
  local srv
  setup(function()
    srv = H.start("budget.lua", { options = { ["request-timeout"] = "1", ["cpu-limit"] = "1" } })
  end)
  -- no clean stop here: a hung worker would hold the stop for the whole --grace; killed instead
  teardown(H.cleanup)

  it("answers 504 and goes on when the discarded handler has a __close that never returns", function()
    local slow = open(srv.addr, "/close-loop?s=5")
    local ok, err = pcall(collect, { slow }, 5)
    assert.is_true(ok, "no answer to the request whose __close loops: " .. tostring(err))
    assert.equal(504, slow.status)
    local t0 = H.now()
    local hello = collect({ open(srv.addr, "/hello") }, 5)[1]
    assert.equal(200, hello.status, "the worker no longer serves")
    assert.is_true(H.now() - t0 < 3)
  end)
end)

describe("--memory-limit 32", function()
  local srv = H.serve("budget.lua", { options = { ["memory-limit"] = "32" } })

  it("reports the limit in scgi.worker()", function()
    local w = worker(srv.addr)
    assert.equal(32 * 1048576, w.lua_memory_limit)
    assert.is_true(w.lua_memory > 0 and w.lua_memory < w.lua_memory_limit)
  end)

  it("answers 500 to a handler allocating without bound, logs the limit, and serves the next request", function()
    for round = 1, 3 do
      local mark = #srv.output()
      local t0 = H.now()
      local status, _, body = H.request(srv.addr, "GET", "/alloc")
      assert.equal(500, status, "round " .. round)
      assert.equal("500 Internal Server Error\n", body)
      assert.is_true(H.now() - t0 < 5)
      local log = H.wait_log_match(srv, mark, "GET /alloc: [^\n]*not enough memory[^\n]*limit 32[%.0]* MiB")
      assert.matches("not enough memory %(limit 32%.0 MiB, in use %d+%.%d MiB%)", log) -- rounded
      H.hello_ok(srv.addr)
      local w = worker(srv.addr)
      assert.equal(1, w.active_requests)
      assert.is_true(w.lua_memory < w.lua_memory_limit)
    end
  end)

  it("raises a memory error a handler can catch with pcall, and it can allocate afterwards", function()
    assert.equal("pcall=false err=not enough memory small=1000", (H.request_ok(srv.addr, "GET", "/alloc-pcall")))
    H.hello_ok(srv.addr)
  end)
end)

for _, transport in ipairs({ "unix", "tcp" }) do
  describe("a client that goes away (" .. transport .. ")", function()
    local srv = H.serve("budget.lua", { socket = transport == "tcp" and "127.0.0.1:0" or nil })
    setup(function()
      if transport == "tcp" then assert.matches("^127%.0%.0%.1:%d+$", srv.addr) end
    end)

    local function live_back_to_one()
      H.wait_for(function() return worker(srv.addr).active_requests == 1 end, 5,
        "the live request count to return to 1")
    end

    -- GET uri&id=id, whose handler sleeps: the client goes away 0.2 s later; returns what the
    -- handler recorded under id once it did.
    local function gone_while_asleep(uri, id)
      local s = open(srv.addr, uri .. "&id=" .. id)
      H.sleep(0.2)
      s.s:close()
      return H.wait_for(function() return result(srv.addr, id) end, 5, "the handler's record")
    end

    it("mid-response (100 MiB streamed): the coroutine is freed and the write said closed", function()
      assert.equal(1, worker(srv.addr).active_requests)
      local id = transport .. "-stream"
      local s = open(srv.addr, "/stream?mb=100&id=" .. id)
      s.s:settimeout(5)
      local got = assert(s.s:receive(65536))
      assert.equal(65536, #got)
      s.s:close()
      live_back_to_one()
      assert.equal("write nil closed", (H.request_ok(srv.addr, "GET", "/stream-end?id=" .. id)))
      H.wait_for(function() return worker(srv.addr).active_connections == 1 end, 5, "the connection to close")
      H.hello_ok(srv.addr)
    end)

    if transport == "unix" then
      it("while the handler sleeps: client:closed() turns true and a write then says closed", function()
        local r = gone_while_asleep("/sleep-then-closed?s=1", transport .. "-closed")
        assert.is_false(r.before) -- asked before the sleep, with the peer still there
        assert.is_true(r.closed)
        assert.equal("nil", r.write)
        assert.equal("closed", r.write_err)
        live_back_to_one()
      end)

      it("while the handler sleeps: the handler's next write returns nil, 'closed'", function()
        local r = gone_while_asleep("/sleep-then-write?s=1", transport .. "-write")
        assert.is_true(r.closed)
        assert.equal("nil", r.flush)
        assert.equal("closed", r.flush_err)
        live_back_to_one()
        assert.same({ "nil", "closed" }, { r.write, r.write_err })
      end)
    else
      -- over TCP a peer that closed shows only as a FIN, which a half-close sends too: the peer's
      -- reset to the first bytes sent tells
      it("while the handler sleeps: a write after the first one sent says closed, and closed() from then on",
        function()
          local r = gone_while_asleep("/sleep-then-writes?s=1", transport .. "-writes")
          assert.is_true(r.writes_ok <= 1, "writes that went through: " .. r.writes_ok)
          assert.equal("closed", r.err)
          assert.is_true(r.closed)
          live_back_to_one()
        end)
    end

    it("client:closed() stays false on a half-closed connection (" .. transport .. "), which gets its answer",
      function()
        local id = transport .. "-half"
        local s = open(srv.addr, "/sleep-then-closed?s=0.5&id=" .. id)
        H.sleep(0.1)
        assert(s.s:shutdown("send"))
        collect({ s }, 5)
        assert.equal(200, s.status)
        assert.equal("late", s.body)
        local r = result(srv.addr, id)
        assert.is_false(r.closed)
        assert.equal("client", r.write)
      end)
  end)
end
