-- spec/connect_spec.lua: scgi.connect, the cooperative sockets (issue 3, item 2), against a real
-- redis-server (through redis-lua), a scripted peer process (spec/apps/connect_peer.lua) and the
-- real scgi-lua running spec/apps/connect.lua on one worker.
-- Needs Debian's redis-server and lua-redis: without redis-server the spec FAILS (CI installs it).
local H = require "helper"

package.path = package.path .. ";/usr/share/lua/5.3/?.lua"

local REDIS_SERVER = "/usr/bin/redis-server"

local function executable(path) return os.execute("test -x " .. H.quote(path)) == true end

-- Requests whose answer is a Lua table (see spec/apps/connect.lua): at once, or sent now and read
-- by the function returned.
local call, start_call = H.call, H.start_call

-- Starts Debian's redis-server with extra args in a private directory; waits until it answers
-- PING at addr ("127.0.0.1:P" or a unix path).
local function start_redis(args, addr, dir)
  assert(executable(REDIS_SERVER), "redis-server is not installed (" .. REDIS_SERVER ..
    "): spec/connect_spec.lua needs Debian's redis-server; install it with apt-get install " ..
    "redis-server (the spec fails rather than skips without it)")
  local proc = H.spawn("exec " .. REDIS_SERVER .. " " .. args .. " --bind 127.0.0.1 --save '' " ..
    "--appendonly no --daemonize no --dir " .. H.quote(dir), dir, "redis")
  H.wait_for(function()
    if not proc.alive() then error("redis-server exited early:\n" .. proc.output(), 3) end
    return H.redis_line(addr, "PING") == "+PONG"
  end, 10, "redis-server to answer PING at " .. addr)
  return proc
end

-- The scripted peer (spec/apps/connect_peer.lua) on a free port, as its own process.
local function start_peer(dir)
  local port = H.free_port()
  local proc = H.spawn("exec lua5.4 " .. H.quote(H.apps .. "/connect_peer.lua") .. " " .. port .. " 60",
    dir, "peer")
  H.wait_for(function()
    if not proc.alive() then error("connect_peer.lua exited early:\n" .. proc.output(), 3) end
    return proc.output():find("peer listening on " .. port, 1, true)
  end, 10, "the peer to listen")
  proc.port = port
  return proc
end

-- Waits until a program that must not start has exited (or has started after all: then it is
-- stopped and the spec fails); returns its exit code and output.
local function must_exit(proc, timeout)
  H.wait_for(function()
    return not proc.alive() or proc.output():find("listening on", 1, true)
  end, timeout or 10, "scgi-lua to exit")
  if proc.alive() then
    local out = proc.output()
    H.kill(proc)
    error("scgi-lua started although the app called scgi.connect at load time:\n" .. out, 2)
  end
  return proc.wait(5), proc.output()
end

describe("scgi.connect (cooperative sockets)", function()
  local srv, redis_port, redis_path, peer, redis_tcp_dir

  setup(function()
    redis_tcp_dir = H.tmpdir()
    redis_port = H.free_port()
    start_redis("--port " .. redis_port, "127.0.0.1:" .. redis_port, redis_tcp_dir)
    local udir = H.tmpdir()
    redis_path = udir .. "/redis.sock"
    start_redis("--port 0 --unixsocket " .. H.quote(redis_path) .. " --unixsocketperm 700",
      redis_path, udir)
    peer = start_peer(H.tmpdir())
    srv = H.start("connect.lua", { workers = 1,
      options = { ["request-timeout"] = "5", grace = "5" } })
  end)

  teardown(function() H.stop_clean(srv) end)

  describe("with redis-lua on a real redis-server", function()
    it("serves 100 concurrent requests on one worker, each INCR, SET/GET 10 KB, BLPOP 0.2 s",
      function()
        local redis = require "redis"
        local db = redis.connect("127.0.0.1", redis_port) -- the spec's own client, on LuaSocket
        local before = tonumber(db:get("counter")) or 0
        local t0 = H.now()
        local pending = {}
        for i = 1, 100 do
          pending[i] = start_call(srv.addr, "/redis", { port = redis_port, id = i, pause = 0.2 })
        end
        local seen = {}
        for i = 1, 100 do
          local r = pending[i]()
          assert.is_nil(r.error, "request " .. i .. ": " .. tostring(r.error))
          assert.is_true(r.ping)
          assert.is_true(r.set)
          assert.is_true(r.get_same, "request " .. i .. " read back another value")
          assert.equal(10240, r.get_len)
          assert.equal("nil", r.blpop)
          assert.is_true(r.blpop_elapsed >= 0.15 and r.blpop_elapsed < 2,
            "BLPOP 0.2 took " .. r.blpop_elapsed)
          assert.is_true(r.get_again_same)
          assert.is_nil(seen[r.counter], "counter value " .. tostring(r.counter) .. " seen twice")
          seen[r.counter] = true
        end
        local elapsed = H.now() - t0
        for v = before + 1, before + 100 do assert.is_true(seen[v], "no request saw " .. v) end
        assert.equal(before + 100, tonumber(db:get("counter")))
        -- the values are really in redis
        local expect = ("%05d:"):format(37):rep(10240 // 6 + 1):sub(1, 10240)
        assert.equal(expect, db:get("value:37"))
        db:quit()
        -- one after the other the BLPOPs alone take 100 x 0.2 s = 20 s
        assert.is_true(elapsed < 4, ("100 requests took %.2f s: they did not overlap"):format(elapsed))
      end)

    it("SETs and GETs a 4 MiB value (send and receive park and resume on the way)", function()
      local r = call(srv.addr, "/redis-big", { port = redis_port, mb = 4, id = "big" })
      assert.is_nil(r.error, tostring(r.error))
      assert.is_true(r.set)
      assert.equal(4 * 1048576, r.len)
      assert.equal(4 * 1048576, r.strlen)
      assert.is_true(r.same)
      assert.equal(1, r.del)
    end)

    it("connects to redis-server over a unix socket path", function()
      local r = call(srv.addr, "/redis", { path = redis_path, id = 7, pause = 0.1 })
      assert.is_nil(r.error, tostring(r.error))
      assert.is_true(r.ping)
      assert.equal(1, r.counter) -- a fresh redis of its own
      assert.is_true(r.set)
      assert.is_true(r.get_same)
      assert.equal(10240, r.get_len)
      assert.equal("nil", r.blpop)
      assert.is_true(r.blpop_elapsed >= 0.05)
      assert.is_true(r.get_again_same)
      local r2 = call(srv.addr, "/redis", { path = redis_path, id = 8 })
      assert.equal(2, r2.counter)
      assert.equal(":2", H.redis_line(redis_path, "INCRBY counter 0"))
    end)
  end)

  describe("connect failures", function()
    it("answers nil, \"connection refused\" for a port nobody listens on", function()
      local port = H.free_port()
      local r = call(srv.addr, "/connect", { port = port })
      assert.is_true(r.ok, tostring(r.error))
      assert.equal(2, r.n)
      assert.equal("nil", r.first_type)
      assert.equal("connection refused", r.second)
    end)

    it("answers nil and a message for a unix path nobody listens on", function()
      local dir = H.tmpdir()
      local r = call(srv.addr, "/connect", { path = dir .. "/nobody.sock" })
      assert.is_true(r.ok, tostring(r.error))
      assert.equal(2, r.n)
      assert.equal("nil", r.first_type)
      assert.is_string(r.second)
      assert.is_true(#r.second > 0)
    end)
  end)

  describe("receive", function()
    it("times out after settimeout(0.5) with nil, \"timeout\" while the worker serves others",
      function()
        local finish = start_call(srv.addr, "/receive", { port = peer.port, timeout = 0.5, pattern = "*l" })
        -- while that request waits on the silent peer, the one worker answers at once
        local t0 = H.now()
        local served = 0
        repeat
          local t1 = H.now()
          local status, _, body = H.request(srv.addr, "GET", "/hello")
          assert.equal(200, status)
          assert.equal("Hello world\n", body)
          assert.is_true(H.now() - t1 < 0.25, "a request waited for the socket's timeout")
          served = served + 1
        until H.now() - t0 > 0.3
        assert.is_true(served >= 3)
        local r = finish()
        assert.same({ n = 1, 1 }, r.settimeout)
        assert.same({ n = 3, nil, "timeout", "" }, r[1])
        assert.is_true(r.elapsed1 >= 0.45 and r.elapsed1 < 1.2, "timed out after " .. r.elapsed1)
      end)

    it("returns what came before the timeout as the partial result, for every pattern", function()
      for _, pattern in ipairs({ "*l", "l", "*a", "a", "10" }) do
        local r = call(srv.addr, "/receive",
          { port = peer.port, send = "say par", timeout = 0.3, pattern = pattern })
        assert.same({ n = 3, nil, "timeout", "par" }, r[1], "pattern " .. pattern)
        assert.is_true(r.elapsed1 >= 0.25 and r.elapsed1 < 1, "pattern " .. pattern .. ": " .. r.elapsed1)
      end
    end)

    it("returns nil, \"closed\", partial when the peer closes mid-reply", function()
      local r = call(srv.addr, "/receive", { port = peer.port, send = "close abc", pattern = 10, times = 2 })
      assert.same({ n = 3, nil, "closed", "abc" }, r[1])
      assert.same({ n = 3, nil, "closed", "" }, r[2])
      r = call(srv.addr, "/receive", { port = peer.port, send = "close abc", pattern = "*l" })
      assert.same({ n = 3, nil, "closed", "abc" }, r[1])
    end)

    it("\"*a\" returns everything up to the close, without an error", function()
      local r = call(srv.addr, "/receive", { port = peer.port, send = "close abc", pattern = "*a" })
      assert.same({ n = 1, "abc" }, r[1])
      r = call(srv.addr, "/receive", { port = peer.port, send = "close", pattern = "a", times = 2 })
      assert.same({ n = 1, "" }, r[1])
      assert.same({ n = 1, "" }, r[2])
    end)

    it("reads lines as LuaSocket does: \"\\r\" dropped, \"*l\" the default, dirty() tells", function()
      local r = call(srv.addr, "/receive",
        { port = peer.port, send = "close one\\r\\ntwo\\n\\nthree", times = 4 })
      assert.same({ n = 1, "one" }, r[1])
      assert.is_true(r.dirty1)
      assert.same({ n = 1, "two" }, r[2])
      assert.same({ n = 1, "" }, r[3])
      assert.same({ n = 3, nil, "closed", "three" }, r[4])
      assert.is_false(r.dirty4)
    end)

    it("reads exact byte counts across the buffered data", function()
      local r = call(srv.addr, "/receive",
        { port = peer.port, send = "close 0123456789abcdef", pattern = 4, times = 5 })
      assert.same({ n = 1, "0123" }, r[1])
      assert.same({ n = 1, "4567" }, r[2])
      assert.same({ n = 1, "89ab" }, r[3])
      assert.same({ n = 1, "cdef" }, r[4])
      assert.same({ n = 3, nil, "closed", "" }, r[5])
      r = call(srv.addr, "/receive", { port = peer.port, send = "close xyz", pattern = 0 })
      assert.same({ n = 1, "" }, r[1])
    end)

    it("puts the prefix before a line and before everything", function()
      local r = call(srv.addr, "/receive",
        { port = peer.port, send = "close line\\nrest", pattern = "*l", prefix = "P-" })
      assert.same({ n = 1, "P-line" }, r[1])
      r = call(srv.addr, "/receive", { port = peer.port, send = "close all", pattern = "*a", prefix = "P-" })
      assert.same({ n = 1, "P-all" }, r[1])
      r = call(srv.addr, "/receive",
        { port = peer.port, send = "say par", pattern = "*l", prefix = "P-", timeout = 0.2 })
      assert.same({ n = 3, nil, "timeout", "P-par" }, r[1])
    end)

    it("counts the prefix in receive(n, prefix), as LuaSocket does", function()
      local r = call(srv.addr, "/receive",
        { port = peer.port, send = "close abcdefghij", pattern = 5, prefix = "xy" })
      assert.same({ n = 1, "xyabc" }, r[1])
    end)
  end)

  describe("send", function()
    it("sends everything and returns the index of the last byte sent", function()
      local r = call(srv.addr, "/send", { port = peer.port, data = "hello" })
      assert.same({ n = 1, 5 }, r.cmd)
      assert.same({ n = 1, 5 }, r.send)
      assert.same({ n = 1, 1 }, r.shutdown)
      assert.same({ n = 1, "hello" }, r.echoed)
    end)

    it("sends data:sub(i, j) for send(data, i, j) and returns j", function()
      local r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = 2, j = 4 })
      assert.same({ n = 1, 4 }, r.send)
      assert.same({ n = 1, "ell" }, r.echoed)
      r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = 3 })
      assert.same({ n = 1, 5 }, r.send)
      assert.same({ n = 1, "llo" }, r.echoed)
      r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = 4, j = 2 })
      assert.same({ n = 1, 3 }, r.send)
      assert.same({ n = 1, "" }, r.echoed)
    end)

    it("counts negative indices from the end, as LuaSocket does", function()
      local r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = -2 })
      assert.same({ n = 1, 5 }, r.send)
      assert.same({ n = 1, "lo" }, r.echoed)
      r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = 2, j = -2 })
      assert.same({ n = 1, 4 }, r.send)
      assert.same({ n = 1, "ell" }, r.echoed)
      r = call(srv.addr, "/send", { port = peer.port, data = "hello", i = 1, j = -1 })
      assert.same({ n = 1, 5 }, r.send)
      assert.same({ n = 1, "hello" }, r.echoed)
    end)
  end)

  describe("misuse", function()
    it("raises on a closed socket and on bad patterns; the other calls answer as LuaSocket's",
      function()
        local r = call(srv.addr, "/misuse", { port = peer.port })
        assert.matches("^tcp{client}: ", r.tostring_open) -- as LuaSocket names its objects
        assert.is_true(math.type(r.fd_open) == "integer" and r.fd_open >= 0)
        assert.same({ n = 1, 1 }, r.setoption)
        assert.same({ n = 1, 1 }, r.settimeout)
        for _, k in ipairs({ "bad_pattern", "bad_pattern2", "negative", "not_a_socket" }) do
          assert.is_false(r[k][1], k)
          assert.matches("bad argument", r[k][2], 1, true)
        end
        assert.matches("invalid pattern", r.bad_pattern[2], 1, true)
        assert.same({ n = 1, 1 }, r.close)
        assert.same({ n = 1, 1 }, r.close_again)
        assert.matches("closed", r.tostring_closed, 1, true)
        assert.equal(-1, r.fd_closed)
        for _, k in ipairs({ "send_closed", "receive_closed", "shutdown_closed" }) do
          assert.is_false(r[k][1], k)
          assert.matches("attempt to use a closed socket", r[k][2], 1, true)
        end
        assert.is_true(r.in_coroutine[1], "scgi.connect failed in a coroutine the handler made")
        assert.matches("^tcp{closed}: ", r.in_coroutine[2]) -- closed by the app after the check
      end)

    it("raises in a request that uses a socket another request waits on", function()
      local finish = start_call(srv.addr, "/shared-wait", { port = peer.port, id = "a", timeout = 1 })
      H.sleep(0.2)
      local r = call(srv.addr, "/shared-receive", { id = "a" })
      assert.is_false(r.result[1])
      assert.matches("in use by another request", r.result[2], 1, true)
      local w = finish()
      assert.same({ n = 4, true, nil, "timeout", "" }, w.result)
    end)

    it("wakes a request waiting on a socket that another request closes", function()
      local finish = start_call(srv.addr, "/shared-wait", { port = peer.port, id = "b", timeout = 2 })
      H.sleep(0.2)
      local t0 = H.now()
      local c = call(srv.addr, "/shared-close", { id = "b" })
      assert.same({ n = 1, 1 }, c.result)
      local ok, w = pcall(finish)
      assert.is_true(ok, "the waiting request did not answer: " .. tostring(w))
      assert.is_true(H.now() - t0 < 1, ("the waiting request answered after %.2f s"):format(H.now() - t0))
      assert.same({ n = 4, true, nil, "closed", "" }, w.result)
    end)

    it("fails the program with a clear message when the app calls scgi.connect at load (TCP)",
      function()
        local proc = H.start("connect.lua",
          { expect_fail = true, env = "SOCK_CONNECT_AT_LOAD=127.0.0.1:" .. redis_port })
        local rc, out = must_exit(proc)
        assert.equal(1, rc)
        assert.matches("scgi.connect can only be called from a request's handler", out, 1, true)
      end)

    it("fails the program with a clear message when the app calls scgi.connect at load (unix)",
      function()
        local proc = H.start("connect.lua",
          { expect_fail = true, env = "SOCK_CONNECT_AT_LOAD=" .. H.quote(redis_path) })
        local rc, out = must_exit(proc)
        assert.equal(1, rc)
        assert.matches("scgi.connect can only be called from a request's handler", out, 1, true)
      end)
  end)
end)
