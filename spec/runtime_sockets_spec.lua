-- spec/runtime_sockets_spec.lua: LuaSocket made cooperative inside requests, tasks and coroutines,
-- on the real scgi-lua with one worker (spec/apps/runtime_sockets.lua), against real peers on
-- loopback: python3's threading HTTP server answering after a delay (H.http_peer), Debian's
-- redis-server through Debian's lua-redis (for Lua 5.3: LUA_PATH gets /usr/share/lua/5.3), a
-- listener whose accept queue is full, and, where the specs may make a private mount namespace
-- (root and unshare), the server with its own /etc/hosts and a slow DNS server on 127.0.0.1:53.
-- The connection pool: sock:setkeepalive, getreusedtimes, counted by redis's INFO stats.
local H = require "helper"
local socket = require "socket"

local LUA_PATH = "LUA_PATH='/usr/share/lua/5.3/?.lua;;'"

-- GET /hello on srv answers in under `bound` seconds (the worker is not held).
local function hello_fast(srv, bound)
  local t0 = H.now()
  H.hello_ok(srv.addr)
  local took = H.now() - t0
  assert.is_true(took < bound, ("/hello took %.2f s: the worker was held"):format(took))
end

describe("LuaSocket inside requests, tasks and coroutines", function()
  local srv, redis, peer
  setup(function()
    redis = H.redis()
    peer = H.http_peer()
    srv = H.start("runtime_sockets.lua", { workers = 1, env = LUA_PATH })
  end)
  teardown(function() H.stop_clean(srv) end)

  it("socket.tcp() is cooperative in the handler, a task and a coroutine; LuaSocket's own at load time",
    function()
      local r = H.call(srv.addr, "/kinds")
      assert.is_false(r.load.cooperative)
      assert.matches("^tcp{master}: ", r.load.tostring)
      for _, where in ipairs({ "handler", "task", "coroutine" }) do
        assert.is_true(r[where].cooperative, where)
        assert.matches("^tcp{master}: 0x%x+$", r[where].tostring)
        assert.matches("^tcp{closed}: 0x%x+$", r[where].closed)
      end
      assert.matches("^tcp{master}: ", r.tcp4)
      assert.matches("^tcp{master}: ", r.tcp6)
      assert.matches("^unix{master}: ", r.unix)
      assert.matches("^unix{master}: ", r.stream)
    end)

  it("strings with a NUL byte are refused where C would cut them: host, pool name, option, pattern, server name, path",
    function()
      local r = H.call(srv.addr, "/nul", { port = redis.port })
      for _, k in ipairs({ "connect", "pool", "option", "pattern", "name", "unix" }) do
        assert.is_false(r[k].ok, k .. " was taken: " .. tostring(r[k].a))
        assert.matches("NUL byte", r[k].a, 1, true)
      end
    end)

  it("a socket closed by its to-be-closed variable wakes the task parked on it: nil, \"closed\" at once", function()
    local r = H.start_call(srv.addr, "/close-wakes", { port = redis.port }, 5)()
    assert.same({ n = 4, true, nil, "closed", "" }, r.waited)
    assert.is_true(r.elapsed < 1, ("the task woke after %.2f s"):format(r.elapsed))
  end)

  it("20,000 connects that raise (port, unix path, pool name) leave no memory behind", function()
    local pid = H.serving_pid(srv)
    local function rss_kib()
      local f = assert(io.open("/proc/" .. pid .. "/status"))
      local kib = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
      f:close()
      return kib
    end
    H.call(srv.addr, "/raising-connects", { n = 2000 }) -- the heap's own growth first
    local before = rss_kib()
    local r = H.call(srv.addr, "/raising-connects", { n = 20000 })
    local grown = rss_kib() - before
    assert.equal(20000, r.raised)
    -- ASan's quarantine keeps what was freed (LSan checks it), valgrind has a heap of its own
    if H.crash_signal() == 6 or H.sh_out("readlink /proc/" .. pid .. "/exe"):find("memcheck", 1, true) then return end
    assert.is_true(grown < 4096, ("the serving process grew by %d KiB"):format(grown))
  end)

  it("socket.sleep parks the request: three 1 s sleeps on one worker end together", function()
    local t0 = H.now()
    local pending = {}
    for i = 1, 3 do pending[i] = H.start_call(srv.addr, "/sleep", { s = 1 }) end
    hello_fast(srv, 0.3)
    for _, r in ipairs(H.finish_all(pending)) do assert.is_true(r.elapsed >= 0.95, "slept " .. r.elapsed) end
    local took = H.now() - t0
    assert.is_true(took < 1.8, ("three 1 s sleeps took %.2f s"):format(took))
  end)

  it("five socket.http requests to a server that answers after 1 s: together in < 2.5 s, /hello meanwhile",
    function()
      local t0 = H.now()
      local pending = {}
      for i = 1, 5 do
        pending[i] = H.start_call(srv.addr, "/http",
          { url = ("http://127.0.0.1:%d/slow%d?delay=1"):format(peer.port, i) })
      end
      H.sleep(0.2)
      hello_fast(srv, 0.5)
      for i, r in ipairs(H.finish_all(pending)) do
        assert.equal(200, r.code)
        assert.matches(("^/slow%d after 1 s %%(answer %%d+%%)\n$"):format(i), r.body)
        assert.is_true(r.elapsed >= 0.95)
      end
      local took = H.now() - t0
      assert.is_true(took < 2.5, ("five 1 s requests took %.2f s: they did not overlap"):format(took))
    end)

  it("LuaSocket's TCP API on a cooperative socket (against redis)", function()
    local r = H.call(srv.addr, "/api", { port = redis.port })
    assert.matches("^tcp{master}: ", r.master)
    assert.matches("^tcp{client}: ", r.client)
    assert.matches("^tcp{closed}: ", r.closed)
    assert.same({ n = 1, 1 }, r.settimeout)
    assert.same({ n = 1, 1 }, r.connect)
    assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
    assert.equal("127.0.0.1", r.sock[1])
    assert.equal("inet", r.sock[3])
    assert.same({ n = 1, 1 }, r.nodelay)
    assert.same({ n = 1, 1 }, r.keepalive)
    assert.equal("integer", r.fd)
    assert.same({ n = 1, 8 }, r.send_ij) -- the index of the last byte sent
    assert.same({ n = 1, "+PONG" }, r.pong)
    assert.same({ n = 1, 12 }, r.send_echo)
    assert.same({ n = 1, "$5" }, r.bulk_len)
    assert.same({ n = 1, "xyhel" }, r.prefixed)
    assert.same({ n = 1, "lo" }, r.rest)
    assert.same({ n = 1, "+PONG" }, r.first)
    assert.is_true(r.dirty)
    assert.same({ n = 1, "+PONG" }, r.second)
    assert.is_false(r.clean)
    assert.same({ n = 3, nil, "timeout", "" }, r.timeout)
    assert.is_true(r.timeout_elapsed >= 0.28 and r.timeout_elapsed < 1, "timed out after " .. r.timeout_elapsed)
    -- bytes received, bytes sent, age
    assert.equal(7 + 11 + 14, r.stats[1])
    assert.equal(6 + 12 + 12 + 23, r.stats[2])
    assert.is_true(r.stats[3] > 0)
    assert.same({ n = 1, 1 }, r.close)
    assert.same({ n = 2, false, "attempt to use a closed socket" }, r.use_closed)
  end)

  for _, mode in ipairs({ "handler", "task", "coroutine" }) do
    it("lua-redis, unchanged, in the " .. mode .. ": five requests each BLPOP 1 s end together", function()
      local t0 = H.now()
      local pending = {}
      for i = 1, 5 do
        pending[i] = H.start_call(srv.addr, "/redis",
          { port = redis.port, mode = mode, key = mode .. i, pause = 1 })
      end
      hello_fast(srv, 0.5)
      for i, r in ipairs(H.finish_all(pending)) do
        assert.is_nil(r.error, "request " .. i .. ": " .. tostring(r.error))
        assert.is_true(r.ping)
        assert.equal(1, r.incr)
        assert.is_true(r.set)
        assert.is_true(r.same)
        assert.is_true(r.blpop)
        assert.is_true(r.blpop_elapsed >= 0.95, "BLPOP 1 took " .. r.blpop_elapsed)
        if mode == "coroutine" then
          assert.same({ "ping", "incr", "set", "same", "blpop", "blpop_elapsed", "done" }, r.steps)
        end
      end
      local took = H.now() - t0
      assert.is_true(took < 2.5, ("five BLPOPs of 1 s took %.2f s"):format(took))
      -- what the requests wrote is in redis
      assert.equal("1", redis.command("GET " .. mode .. "3"))
      assert.equal(("v:%s3:"):format(mode):rep(100), redis.command("GET " .. mode .. "3:value"))
    end)
  end

  it("socket.unix (called, and .stream) asks this very worker for /hello", function()
    for _, stream in ipairs({ false, true }) do
      local r = H.call(srv.addr, "/unix-self", { path = srv.addr, stream = stream and 1 or nil })
      assert.same({ n = 1, 1 }, r.connect)
      assert.matches("^unix{client}: ", r.tostring)
      local status, _, body = H.parse(r.got[1])
      assert.equal(200, status)
      assert.equal("Hello world\n", body)
    end
  end)

  it("TCP sockets are connected with tcp-nodelay: a request in two small sends does not wait", function()
    local r = H.call(srv.addr, "/nodelay", { port = redis.port })
    -- 5 round trips: well under a millisecond each as connected; with Nagle's algorithm each
    -- second send waits for the peer's delayed ACK (about 40 ms on Linux)
    assert.is_true(r.default < 0.1, ("5 round trips took %.3f s"):format(r.default))
    assert.is_true(r.nagle > r.default, ("%.3f s with Nagle, %.3f s without"):format(r.nagle, r.default))
  end)

  it("scgi.connect(host, port) and scgi.connect(path): connected sockets", function()
    local r = H.call(srv.addr, "/scgi-connect", { host = "127.0.0.1", port = redis.port })
    assert.matches("^tcp{client}: ", r.tostring)
    assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
    r = H.call(srv.addr, "/scgi-connect", { path = srv.addr })
    assert.matches("^unix{client}: ", r.tostring)
    r = H.call(srv.addr, "/scgi-connect", { host = "127.0.0.1", port = H.free_port() })
    assert.equal("nil", r.tostring)
    assert.equal("connection refused", r.err)
  end)

  it("socket.connect(host, port) and socket.tcp():connect resolve a name (localhost)", function()
    local r = H.call(srv.addr, "/connect", { host = "localhost", port = redis.port, via = "connect" })
    assert.same({ n = 1, true }, r.connect)
    assert.matches("^tcp{client}: ", r.tostring)
    assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
    r = H.call(srv.addr, "/connect", { host = "localhost", port = redis.port, timeout = 2 })
    assert.same({ n = 1, 1 }, r.connect)
  end)

  it("a name that does not resolve: nil, \"host not found\"; a port nobody listens on: refused", function()
    local r = H.call(srv.addr, "/connect", { host = "no-such-host.invalid", port = 80, timeout = 5 })
    assert.same({ n = 2, nil, "host not found" }, r.connect)
    r = H.call(srv.addr, "/connect", { host = "127.0.0.1", port = H.free_port(), timeout = 5 })
    assert.same({ n = 2, nil, "connection refused" }, r.connect)
  end)

  it("connect to a listener whose accept queue is full: nil, \"timeout\" after settimeout(0.5)", function()
    local l = assert(socket.tcp())
    assert(l:bind("127.0.0.1", 0))
    assert(l:listen(1))
    local _, port = l:getsockname()
    -- fill the queue: the first connections are queued (never accepted), then connects hang
    local fill, full = {}, false
    for _ = 1, 8 do
      local c = socket.tcp()
      c:settimeout(0.3)
      local ok = c:connect("127.0.0.1", port)
      fill[#fill + 1] = c
      if not ok then
        full = true
        break
      end
    end
    assert.is_true(full, "the accept queue of a listener with backlog 1 never filled")
    local finish = H.start_call(srv.addr, "/connect", { host = "127.0.0.1", port = port, timeout = 0.5 })
    hello_fast(srv, 0.3)
    local r = finish()
    for _, c in ipairs(fill) do c:close() end
    l:close()
    assert.same({ n = 2, nil, "timeout" }, r.connect)
    assert.is_true(r.elapsed >= 0.45 and r.elapsed < 1.2, ("the timeout came after %.2f s"):format(r.elapsed))
  end)
end)

describe("the connection pool (setkeepalive) against redis-server", function()
  local srv, redis, stats
  setup(function()
    redis = H.redis()
    local dir = H.tmpdir()
    stats = dir .. "/stats.sock"
    srv = H.start("runtime_sockets.lua", { dir = dir, workers = 1, env = LUA_PATH,
      args = { "--stats", stats } })
  end)
  teardown(function() H.stop_clean(srv) end)

  -- The pool's counters of the one worker, from --stats.
  local function pool_figures()
    local w = H.json_decode(select(3, H.get_stats(stats))).workers[1]
    return w.pool_new, w.pool_reused
  end

  -- connected_clients of INFO clients, the connection the spec asks over included
  local function clients() return tonumber(redis.command("INFO clients"):match("connected_clients:(%d+)")) end

  it("five requests that connect and setkeepalive open one connection; getreusedtimes counts 0..4", function()
    local before = redis.connections()
    local new0, reused0 = pool_figures()
    for i = 0, 4 do
      local r = H.call(srv.addr, "/pool", { port = redis.port })
      assert.same({ n = 1, 1 }, r.connect)
      assert.equal(i, r.reused)
      assert.same({ n = 1, "+PONG" }, r.ping)
      assert.same({ n = 1, 1 }, r.keep)
      assert.matches("^tcp{closed}: ", r.after)
    end
    assert.equal(before + 1, redis.connections())
    -- --stats (and /metrics: scgi_pool_new_total, scgi_pool_reused_total) count them
    local new, reused = pool_figures()
    assert.same({ 1, 4 }, { new - new0, reused - reused0 })
  end)

  it("a pool named in connect's options is its own: host:port and {pool = name} do not mix", function()
    local before = redis.connections()
    local a = H.call(srv.addr, "/pool", { port = redis.port, pool = "runtime-a" })
    assert.equal(0, a.reused) -- host:port has one pooled, but this is another key
    local b = H.call(srv.addr, "/pool", { port = redis.port, pool = "runtime-a" })
    assert.equal(1, b.reused)
    assert.equal(before + 1, redis.connections())
  end)

  it("long pool names are compared whole: two that differ after 200 bytes are two pools", function()
    local long = ("https:a-long-host-name.example:443:true:"):rep(6)
    H.call(srv.addr, "/pool", { port = redis.port, pool = long .. "verify=false" })
    local other = H.call(srv.addr, "/pool", { port = redis.port, pool = long .. "verify=true" })
    assert.equal(0, other.reused)
    local same = H.call(srv.addr, "/pool", { port = redis.port, pool = long .. "verify=false" })
    assert.equal(1, same.reused)
  end)

  it("tasks at once take pooled connections or open new ones, and give them all back", function()
    H.call(srv.addr, "/pool", { port = redis.port }) -- one is pooled under host:port
    local before = redis.connections()
    local r = H.call(srv.addr, "/pool-tasks", { n = 3, port = redis.port })
    local fresh = 0
    for i = 1, 3 do
      assert.is_true(r.r[i][1], tostring(r.r[i][2]))
      assert.equal("+PONG", r.r[i][3])
      if r.r[i][2] == 0 then fresh = fresh + 1 end
    end
    assert.equal(2, fresh)
    assert.equal(before + 2, redis.connections())
    -- the three are pooled now: the next three tasks open none
    r = H.call(srv.addr, "/pool-tasks", { n = 3, port = redis.port })
    for i = 1, 3 do assert.is_true(r.r[i][2] > 0, "task " .. i .. " got a fresh connection") end
    assert.equal(before + 2, redis.connections())
  end)

  it("an idle pooled connection closes after max_idle seconds; the next connect opens a new one", function()
    H.call(srv.addr, "/pool", { port = redis.port, pool = "idle", idle = 0.5 })
    local r = H.call(srv.addr, "/pool", { port = redis.port, pool = "idle", idle = 0.5 })
    assert.equal(1, r.reused)
    local before, open = redis.connections(), clients()
    H.wait_for(function() return clients() == open - 1 end, 3, "the idle connection to be closed")
    r = H.call(srv.addr, "/pool", { port = redis.port, pool = "idle", keep = 0 })
    assert.equal(0, r.reused)
    assert.same({ n = 1, "+PONG" }, r.ping)
    assert.equal(before + 1, redis.connections())
  end)

  it("a pooled connection whose peer closed it is dropped, not handed out", function()
    H.call(srv.addr, "/pool", { port = redis.port, pool = "killed" })
    assert.equal(1, H.call(srv.addr, "/pool", { port = redis.port, pool = "killed" }).reused)
    -- redis closes every client connection but the spec's own
    assert.matches("^:%d+$", redis.command("CLIENT KILL TYPE normal SKIPME yes"))
    H.sleep(0.2)
    local before = redis.connections()
    local r = H.call(srv.addr, "/pool", { port = redis.port, pool = "killed" })
    assert.equal(0, r.reused)
    assert.same({ n = 1, "+PONG" }, r.ping)
    assert.equal(before + 1, redis.connections())
  end)

  it("setkeepalive with unread data: nil, \"unread data in buffer\"; the socket stays usable", function()
    local r = H.call(srv.addr, "/pool-unread", { port = redis.port })
    assert.same({ n = 1, 1 }, r.connect)
    assert.same({ n = 1, "+PONG" }, r.first)
    assert.same({ n = 2, nil, "unread data in buffer" }, r.keep_dirty)
    assert.same({ n = 1, "+PONG" }, r.second)
    assert.same({ n = 1, 1 }, r.keep_clean)
  end)
end)

-- A DNS server for the names in its table (UDP on 127.0.0.1:53): A records after the name's
-- delay, no AAAA records, no answer at all for names under .internal, NXDOMAIN for the rest; it
-- prints every query ("query NAME QTYPE").
local DNS_PEER = [[
import socket, struct, threading, time
names = {"slow.test": ("127.0.0.1", 1.5), "fast.test": ("127.0.0.1", 0)}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("dns listening", flush=True)

def answer(data, addr):
    tid = struct.unpack(">H", data[:2])[0]
    i, labels = 12, []
    while data[i]:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode().lower())
        i += 1 + n
    qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
    question = data[12:i + 5]
    name = ".".join(labels)
    print("query", name, qtype, flush=True)
    if name.endswith(".internal"):
        return  # a name nobody answers: the lookup waits for the resolver's timeout
    ip, delay = names.get(name, (None, 0))
    time.sleep(delay)
    rr = b""
    if ip and qtype == 1:
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
    flags = 0x8180 | (0 if ip else 3)
    s.sendto(struct.pack(">HHHHHH", tid, flags, 1, 1 if rr else 0, 0, 0) + question + rr, addr)

while True:
    data, addr = s.recvfrom(512)
    threading.Thread(target=answer, args=(data, addr), daemon=True).start()
]]

-- The shell prefix (for H.start's env) that runs the program in a private mount namespace where
-- /etc/hosts and /etc/resolv.conf are the files given; nil and why when that cannot be done here.
local function private_etc(dir, hosts, resolv)
  if H.uid() ~= "0" or not H.have("unshare") then return nil, "needs root and unshare(1)" end
  H.write_file(dir .. "/hosts", hosts)
  H.write_file(dir .. "/resolv.conf", resolv)
  local prefix = ("unshare -m sh -c 'mount --bind %s /etc/hosts && mount --bind %s /etc/resolv.conf " ..
    "&& shift && exec \"$@\"' sh"):format(dir .. "/hosts", dir .. "/resolv.conf")
  local probe = H.sh_out(prefix .. " exec getent ahosts localhost 2>&1")
  if not probe:find("^::1%s") then
    return nil, "a private /etc/hosts did not work here (getent said: " .. probe .. ")"
  end
  return prefix
end

-- Starts the DNS peer and, with a private /etc/hosts and resolv.conf pointing at it, the server
-- (extra arguments args); returns the server and the DNS peer, or nil and why not.
local function with_dns(args)
  local dir = H.tmpdir()
  local prefix, why_not = private_etc(dir, "127.0.0.1 localhost\n::1 localhost\n",
    "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n")
  if not prefix then return nil, why_not end
  H.write_file(dir .. "/dns.py", DNS_PEER)
  local dns = H.spawn("exec python3 -u " .. H.quote(dir .. "/dns.py"), dir, "dns")
  H.wait_for(function() return not dns.alive() or dns.output():find("dns listening", 1, true) end, 10,
    "the DNS peer")
  if not dns.alive() then return nil, "the DNS peer could not listen on 127.0.0.1:53: " .. dns.output() end
  return H.start("runtime_sockets.lua", { workers = 1, dir = dir, env = LUA_PATH .. " " .. prefix, args = args }),
    dns
end

describe("names: resolved off the worker, every address tried", function()
  local srv, redis, why_not
  setup(function()
    redis = H.redis()
    srv, why_not = with_dns()
  end)
  teardown(function() H.stop_clean(srv) end)

  it("localhost is ::1 first, then 127.0.0.1: connect skips the refused ::1 and reaches the peer",
    function()
      if not srv then
        local own, seen = {}, {}
        for addr in H.sh_out("getent ahosts localhost"):gmatch("(%S+)%s+STREAM") do
          if not seen[addr] then own[#own + 1], seen[addr] = addr, true end
        end
        pending("this host's localhost is " .. table.concat(own, " and ") .. ", and the server " ..
          "cannot get a private /etc/hosts here (" .. tostring(why_not) .. ")")
      end
      -- the peer (redis) listens on 127.0.0.1 only: ::1 refuses
      local r6 = H.call(srv.addr, "/connect", { host = "localhost", port = redis.port, family = "inet6", timeout = 2 })
      assert.same({ n = 2, nil, "connection refused" }, r6.connect)
      local r = H.call(srv.addr, "/connect", { host = "localhost", port = redis.port, timeout = 2 })
      assert.same({ n = 1, 1 }, r.connect)
      assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
      r = H.call(srv.addr, "/connect", { host = "localhost", port = redis.port, via = "connect" })
      assert.same({ n = 1, true }, r.connect)
      assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
    end)

  it("names that take 1.5 s to resolve hold neither the worker nor another name's lookup", function()
    if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
    local t0 = H.now()
    local slow = {}
    for i = 1, 3 do
      slow[i] = H.start_call(srv.addr, "/connect", { host = "slow.test", port = redis.port, timeout = 5 })
    end
    H.sleep(0.2)
    hello_fast(srv, 0.3)
    local fast = H.call(srv.addr, "/connect", { host = "fast.test", port = redis.port, timeout = 5 })
    assert.same({ n = 1, 1 }, fast.connect)
    assert.is_true(fast.elapsed < 0.5, ("fast.test took %.2f s: it waited for slow.test"):format(fast.elapsed))
    for _, r in ipairs(H.finish_all(slow)) do
      assert.same({ n = 1, 1 }, r.connect)
      assert.same({ n = 3, "127.0.0.1", redis.port, "inet" }, r.peer)
      assert.is_true(r.elapsed >= 1.4, "slow.test resolved in " .. r.elapsed)
    end
    local took = H.now() - t0
    assert.is_true(took < 2.5, ("three 1.5 s lookups took %.2f s: they did not overlap"):format(took))
    local nx = H.call(srv.addr, "/connect", { host = "nothing.test", port = redis.port, timeout = 5 })
    assert.same({ n = 2, nil, "host not found" }, nx.connect)
  end)

  it("settimeout bounds a connect whose name is slow to resolve", function()
    if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
    local r = H.call(srv.addr, "/connect", { host = "slow.test", port = redis.port, timeout = 0.5 })
    assert.same({ n = 2, nil, "timeout" }, r.connect)
    assert.is_true(r.elapsed < 1, ("connect with settimeout(0.5) returned after %.2f s"):format(r.elapsed))
  end)
end)

describe("names: lookups nobody waits for any more", function()
  local srv, dns, redis, why_not
  setup(function()
    redis = H.redis()
    srv, dns = with_dns({ "--request-timeout", "3", "--grace", "2" })
    if not srv then why_not = dns end
  end)
  teardown(function() H.stop_clean(srv and srv.alive() and srv or nil) end) -- the last case stops it

  -- Sends n requests at once that connect to a name nobody answers (dbN.internal, N from first),
  -- with settimeout(timeout) or, timeout nil, bounded by --request-timeout; returns the answers'
  -- statuses and connect results.
  local function abandon(first, n, timeout)
    local pending = {}
    for i = 1, n do
      pending[i] = H.start_request(srv.addr, "/connect",
        { host = ("db%d.internal"):format(first + i), port = redis.port, timeout = timeout })
    end
    local out = {}
    for i, finish in ipairs(pending) do
      local status, _, body = finish()
      out[i] = { status = status, body = body }
    end
    return out
  end

  -- fast.test (answered at once) connects within `bound` seconds.
  local function fast(bound)
    local r = H.call(srv.addr, "/connect", { host = "fast.test", port = redis.port, timeout = 5 })
    assert.same({ n = 1, 1 }, r.connect)
    assert.is_true(r.elapsed < bound, ("fast.test took %.2f s: abandoned lookups held it"):format(r.elapsed))
  end

  it("40 connects that time out (settimeout 0.3) leave no lookup queued: fast.test resolves at once",
    function()
      if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
      for _, r in ipairs(abandon(0, 40, 0.3)) do
        assert.same({ n = 2, nil, "timeout" }, H.decode(r.status, r.body, r.body, "/connect").connect)
      end
      fast(0.5)
    end)

  it("40 connects ended by --request-timeout 3 (504) likewise", function()
    if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
    for _, r in ipairs(abandon(100, 40, nil)) do assert.equal(504, r.status) end
    fast(0.5)
  end)

  it("ten connects to one name at once share one lookup (two queries: A and AAAA)", function()
    if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
    local before = H.count(dns.output(), "query slow.test ")
    local calls = {}
    for i = 1, 10 do
      calls[i] = H.start_call(srv.addr, "/connect", { host = "slow.test", port = redis.port, timeout = 5 })
    end
    for _, r in ipairs(H.finish_all(calls)) do assert.same({ n = 1, 1 }, r.connect) end
    -- the DNS peer's log may lag its answer: wait for the first line, then for any late ones
    H.wait_for(function() return H.count(dns.output(), "query slow.test ") > before end, 5,
      "the DNS peer's log of the query")
    H.sleep(0.3)
    local queries = H.count(dns.output(), "query slow.test ") - before
    assert.is_true(queries >= 1 and queries <= 2, queries .. " queries for slow.test")
  end)

  it("SIGTERM with 40 abandoned lookups stops within --grace 2", function()
    if not srv then pending("no private resolv.conf for the server: " .. tostring(why_not)) end
    abandon(200, 40, 0.3)
    local t0 = H.now()
    assert.equal(0, srv.stop())
    local took = H.now() - t0
    assert.is_true(took < 2, ("the stop took %.2f s: it waited for lookups nobody waits for"):format(took))
  end)
end)
