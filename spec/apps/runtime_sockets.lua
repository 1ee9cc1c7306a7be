-- spec/apps/runtime_sockets.lua: routes for spec/runtime_sockets_spec.lua and
-- spec/runtime_tls_spec.lua: LuaSocket's own API (socket.tcp, socket.connect, socket.unix,
-- socket.sleep, socket.http), LuaSec's ssl.https, lua-redis and sock:sslhandshake inside
-- requests, tasks and coroutines, where scgi-lua makes them cooperative; the connection pool.
-- Routes answer what the calls returned as Lua source (runtime_common.answer).
-- lua-redis is Debian's, installed for Lua 5.3 only (the spec puts /usr/share/lua/5.3 on LUA_PATH).
local scgi = require "scgi"
local socket = require "socket"
local R = require "router"
local C = require "runtime_common"
local pack, answer = C.pack, C.answer

-- Whether s is one of scgi-lua's cooperative sockets: they have the pool's methods, LuaSocket's
-- own do not.
local function cooperative(s) return s.setkeepalive ~= nil and s.getreusedtimes ~= nil end

-- At load time socket.tcp() is LuaSocket's own blocking socket, not a cooperative one.
local at_load
do
  local s = socket.tcp()
  at_load = { tostring = tostring(s), cooperative = cooperative(s) }
  s:close()
end

local routes = {}

-- A route whose answer is the table fn(q) returns (q: the decoded query) with elapsed, the
-- seconds fn took.
local function timed(fn)
  return function(headers, client)
    local q = C.query(headers)
    local t0 = scgi.now()
    local r = fn(q)
    r.elapsed = scgi.now() - t0
    answer(client, r)
  end
end

routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end

-- Which kind of socket socket.tcp() gives at load time, in the handler, in a task and in a
-- coroutine the handler resumes.
routes["/kinds"] = function(_, client)
  local function kind()
    local s = socket.tcp()
    local k = { tostring = tostring(s), cooperative = cooperative(s) }
    s:close()
    k.closed = tostring(s)
    return k
  end
  local t = scgi.spawn(kind)
  local _, in_task = scgi.wait(t)
  answer(client, { load = at_load, handler = kind(), task = in_task, coroutine = coroutine.wrap(kind)(),
    tcp4 = tostring(socket.tcp4()), tcp6 = tostring(socket.tcp6()),
    unix = tostring(require("socket.unix")()), stream = tostring(require("socket.unix").stream()) })
end

-- ?s=: socket.sleep(s) (cooperative in a request): how long it took.
routes["/sleep"] = timed(function(q)
  socket.sleep(tonumber(q.s) or 1)
  return {}
end)

-- ?url=: socket.http.request(url) (LuaSocket's HTTP client, unchanged): body, code, headers.
routes["/http"] = timed(function(q)
  local body, code, hs = require("socket.http").request(q.url)
  return { body = body, code = code, length = hs and hs["content-length"] }
end)

-- ?url=&verify=&cafile=: LuaSec's ssl.https.request (unchanged) with the table form when verify
-- or cafile is given; ltn12 collects the body.
routes["/https"] = timed(function(q)
  local https, ltn12 = require("ssl.https"), require("ltn12")
  if q.verify or q.cafile then
    local parts = {}
    local one, code, hs, status = https.request({ url = q.url, verify = q.verify, cafile = q.cafile,
      sink = ltn12.sink.table(parts) })
    return { one = one, code = code, status = status, body = table.concat(parts),
      length = type(hs) == "table" and hs["content-length"] or nil }
  end
  local body, code = https.request(q.url)
  return { body = body, code = code }
end)

-- ?host=&port=&timeout=&family=(any|inet|inet6)&via=(tcp|connect): what connecting gave, how
-- long it took, and the peer's address.
routes["/connect"] = function(headers, client)
  local q = C.query(headers)
  local t0 = scgi.now()
  local s, r
  if q.via == "connect" then
    local fn = q.family == "inet6" and socket.connect6 or q.family == "inet" and socket.connect4 or socket.connect
    s = fn(q.host, tonumber(q.port))
    r = { connect = pack(s ~= nil), tostring = tostring(s) }
  else
    s = (q.family == "inet6" and socket.tcp6 or q.family == "inet" and socket.tcp4 or socket.tcp)()
    if q.timeout then s:settimeout(tonumber(q.timeout)) end
    r = { connect = pack(s:connect(q.host, tonumber(q.port))), tostring = tostring(s) }
  end
  r.elapsed = scgi.now() - t0
  if s and r.connect[1] then r.peer = pack(s:getpeername()) end
  if s then s:close() end
  answer(client, r)
end

-- ?host=&port= or ?path=: scgi.connect, the shorthand.
routes["/scgi-connect"] = function(headers, client)
  local q = C.query(headers)
  local s, err
  if q.path then s, err = scgi.connect(q.path) else s, err = scgi.connect(q.host, tonumber(q.port)) end
  local r = { tostring = tostring(s), err = err }
  if s then
    r.peer = pack(s:getpeername())
    s:close()
  end
  answer(client, r)
end

-- ?port= of a redis: 5 PINGs each sent in two pieces, on a socket as connected and on one with
-- tcp-nodelay turned off (Nagle's algorithm then holds each second piece for the peer's ACK).
routes["/nodelay"] = function(headers, client)
  local port = tonumber(C.query(headers).port)
  local function pings(nodelay)
    local s = assert(scgi.connect("127.0.0.1", port))
    if nodelay == false then s:setoption("tcp-nodelay", false) end
    local t0 = scgi.now()
    for _ = 1, 5 do
      s:send("PI")
      s:send("NG\r\n")
      assert(s:receive("*l") == "+PONG")
    end
    s:close()
    return scgi.now() - t0
  end
  answer(client, { default = pings(), nagle = pings(false) })
end

-- ?path= of this very server: socket.unix (called, or .stream) asks it for /hello.
routes["/unix-self"] = function(headers, client)
  local q = C.query(headers)
  local unix = require("socket.unix")
  local s = q.stream and unix.stream() or unix()
  s:settimeout(5)
  local r = { connect = pack(s:connect(q.path)), tostring = tostring(s) }
  r.send = pack(s:send(C.scgi_get("/hello")))
  r.got = pack(s:receive("*a"))
  s:close()
  answer(client, r)
end

-- LuaSocket's TCP API on socket.tcp() against the redis-server at ?port=.
routes["/api"] = function(headers, client)
  local port = tonumber(C.query(headers).port)
  local s = socket.tcp()
  local r = { master = tostring(s) }
  r.settimeout = pack(s:settimeout(2))
  r.connect = pack(s:connect("127.0.0.1", port))
  r.client = tostring(s)
  r.peer = pack(s:getpeername())
  r.sock = pack(s:getsockname())
  r.nodelay = pack(s:setoption("tcp-nodelay", true))
  r.keepalive = pack(s:setoption("keepalive", true))
  r.fd = math.type(s:getfd())
  r.send_ij = pack(s:send("xxPING\r\nyy", 3, 8)) -- "PING\r\n"
  r.pong = pack(s:receive("*l"))
  r.send_echo = pack(s:send("ECHO hello\r\n"))
  r.bulk_len = pack(s:receive())              -- "$5"
  r.prefixed = pack(s:receive(5, "xy"))       -- "xy" .. "hel": the prefix counts towards 5
  r.rest = pack(s:receive("*l"))              -- "lo"
  s:send("PING\r\nPING\r\n")
  socket.sleep(0.1)
  r.first = pack(s:receive("*l"))
  r.dirty = s:dirty()                         -- the second +PONG is buffered
  r.second = pack(s:receive("*l"))
  r.clean = s:dirty()
  s:settimeout(0.3)
  local t0 = scgi.now()
  s:send("BLPOP runtime:empty 5\r\n")
  r.timeout = pack(s:receive("*l"))
  r.timeout_elapsed = scgi.now() - t0
  r.stats = pack(s:getstats())
  r.close = pack(s:close())
  r.closed = tostring(s)
  r.use_closed = pack(pcall(s.send, s, "PING\r\n"))
  answer(client, r)
end

-- lua-redis (unchanged, over socket.tcp) at ?port=: PING, INCR ?key=, SET and GET a value, BLPOP
-- an empty list for ?pause= seconds; ?mode=task runs it in a task (scgi.spawn), ?mode=coroutine in
-- a coroutine.wrap generator that yields each reply, otherwise in the handler.
local function redis_work(port, key, pause, yield)
  local db = require("redis").connect("127.0.0.1", port)
  local out = {}
  local function step(name, v)
    out[name] = v
    if yield then yield(name) end
  end
  step("ping", db:ping())
  step("incr", db:incr(key))
  local value = ("v:%s:"):format(key):rep(100)
  step("set", db:set(key .. ":value", value))
  step("same", db:get(key .. ":value") == value)
  local t0 = scgi.now()
  step("blpop", db:blpop(key .. ":empty", pause) == nil)
  step("blpop_elapsed", scgi.now() - t0)
  db:quit()
  return out
end

routes["/redis"] = timed(function(q)
  local port, key, pause = tonumber(q.port), q.key or "k", tonumber(q.pause) or 1
  if q.mode == "task" then
    local t = scgi.spawn(redis_work, port, key, pause)
    local ok, v = scgi.wait(t)
    return ok and v or { error = tostring(v) }
  elseif q.mode == "coroutine" then
    local steps, r = {}, nil
    local gen = coroutine.wrap(function()
      local out = redis_work(port, key, pause, coroutine.yield)
      coroutine.yield("done", out)
    end)
    for name, out in gen do
      steps[#steps + 1] = name
      if out then r = out end
    end
    r.steps = steps
    return r
  end
  return redis_work(port, key, pause)
end)

-- The pool, against the redis-server at ?port=: connect (to ?host=, default 127.0.0.1; with
-- {pool = ?pool=} when given), how often the connection was reused, PING, then setkeepalive
-- (?idle=, ?size=) unless ?keep=0.
routes["/pool"] = function(headers, client)
  local q = C.query(headers)
  local s = socket.tcp()
  s:settimeout(2)
  local r = {}
  r.connect = pack(s:connect(q.host or "127.0.0.1", tonumber(q.port), q.pool and { pool = q.pool } or nil))
  if not r.connect[1] then return answer(client, r) end
  r.reused = s:getreusedtimes()
  s:send("PING\r\n")
  r.ping = pack(s:receive("*l"))
  if q.keep ~= "0" then
    r.keep = pack(s:setkeepalive(tonumber(q.idle), tonumber(q.size)))
    r.after = tostring(s)
  else
    s:close()
  end
  answer(client, r)
end

-- ?port=: setkeepalive with a reply still unread: nil, "unread data in buffer"; the socket stays
-- usable; once read, setkeepalive takes it.
routes["/pool-unread"] = function(headers, client)
  local port = tonumber(C.query(headers).port)
  local s = socket.tcp()
  s:settimeout(2)
  local r = { connect = pack(s:connect("127.0.0.1", port)) }
  s:send("PING\r\nPING\r\n")
  socket.sleep(0.1)
  r.first = pack(s:receive("*l"))
  r.keep_dirty = pack(s:setkeepalive())
  r.second = pack(s:receive("*l"))
  r.keep_clean = pack(s:setkeepalive())
  answer(client, r)
end

-- ?n=&port=: n tasks at once, each takes a connection of the pool, PINGs, sleeps, gives it back.
routes["/pool-tasks"] = function(headers, client)
  local q = C.query(headers)
  answer(client, { r = C.spawn_all(tonumber(q.n) or 3, function()
    local s = socket.tcp()
    assert(s:connect("127.0.0.1", tonumber(q.port)))
    local reused = s:getreusedtimes()
    s:send("PING\r\n")
    local pong = s:receive("*l")
    socket.sleep(0.1)
    assert(s:setkeepalive(10))
    return reused, pong
  end) })
end

-- sock:sslhandshake against the TLS server at ?port= (host ?host=, default 127.0.0.1):
-- ?reuse=false asks for true instead of a session, ?name= the server name, ?verify=0 skips
-- verifying; then a GET over it.
routes["/sslhandshake"] = function(headers, client)
  local q = C.query(headers)
  local s = socket.tcp()
  s:settimeout(5)
  local r = { connect = pack(s:connect(q.host or "127.0.0.1", tonumber(q.port))) }
  local reuse = nil
  if q.reuse == "false" then reuse = false end
  local verify = nil
  if q.verify == "0" then verify = false end
  local t0 = scgi.now()
  local hs = pack(s:sslhandshake(reuse, q.name, verify))
  r.elapsed = scgi.now() - t0
  r.handshake = { n = hs.n, type(hs[1]) == "userdata" and "session" or hs[1], hs[2] }
  if hs[1] then
    s:send("GET /tls?delay=" .. (q.delay or "0") .. " HTTP/1.0\r\nHost: localhost\r\n\r\n")
    r.answer = pack(s:receive("*a"))
  end
  s:close()
  answer(client, r)
end

-- ?port= of the TLS server: connect, sslhandshake (not verified), one HTTP/1.1 GET kept alive,
-- then setkeepalive; the next request's connect takes the TLS connection from the pool.
routes["/tls-pool"] = function(headers, client)
  local q = C.query(headers)
  local s = socket.tcp()
  s:settimeout(5)
  local r = { connect = pack(s:connect("127.0.0.1", tonumber(q.port))) }
  r.reused = s:getreusedtimes()
  local hs = s:sslhandshake(nil, "localhost", false)
  r.handshake = type(hs) == "userdata" and "session" or tostring(hs)
  s:send("GET /pooled HTTP/1.1\r\nHost: localhost\r\n\r\n")
  local length
  r.status = s:receive("*l")
  repeat
    local line = s:receive("*l")
    length = length or tonumber((line or ""):match("^[Cc]ontent%-[Ll]ength:%s*(%d+)"))
  until line == nil or line == ""
  r.body = s:receive(length)
  r.keep = pack(s:setkeepalive(10))
  answer(client, r)
end

-- ?port=&name=&verify=0 of the TLS server: connect, sslhandshake(nil, name, verify) and what came
-- of it (the reuse count before and after, getpeerverification), a GET, then setkeepalive.
routes["/tls-pool-verify"] = function(headers, client)
  local q = C.query(headers)
  local s = socket.tcp()
  s:settimeout(5)
  local r = { connect = pack(s:connect("127.0.0.1", tonumber(q.port))) }
  r.reused = s:getreusedtimes()
  local hs = pack(s:sslhandshake(false, q.name, q.verify ~= "0"))
  r.handshake = hs
  r.reused_after = pack(s:getreusedtimes())
  r.verified = pack(s:getpeerverification())
  if hs[1] then
    s:send("GET /verify HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    r.status = s:receive("*l")
    local length
    repeat
      local line = s:receive("*l")
      length = length or tonumber((line or ""):match("^[Cc]ontent%-[Ll]ength:%s*(%d+)"))
    until line == nil or line == ""
    s:receive(length)
    r.keep = pack(s:setkeepalive(10))
  end
  s:close()
  answer(client, r)
end

-- ?port= of the TLS server: LuaSec's ssl.wrap with verify = "peer" (the system's store) over a
-- connection the pool may hold: dohandshake and getpeerverification.
routes["/tls-pool-wrap"] = function(headers, client)
  local q = C.query(headers)
  local ssl = require "ssl"
  local s = socket.tcp()
  s:settimeout(5)
  local r = { connect = pack(s:connect("127.0.0.1", tonumber(q.port))) }
  r.reused = s:getreusedtimes()
  s = ssl.wrap(s, { mode = "client", protocol = "any", verify = "peer" })
  s:sni("localhost")
  r.handshake = pack(s:dohandshake())
  r.verified = pack(s:getpeerverification())
  s:close()
  answer(client, r)
end

-- ?port=&timeout= of a peer that does not speak TLS (or never answers): sslhandshake fails (or
-- times out); then what send and setkeepalive say.
routes["/tls-fail"] = function(headers, client)
  local q = C.query(headers)
  local s = socket.tcp()
  s:settimeout(tonumber(q.timeout) or 5)
  local r = { connect = pack(s:connect("127.0.0.1", tonumber(q.port))) }
  r.handshake = pack(s:sslhandshake(false, "localhost", false))
  r.send = pack(s:send("PASSWORD=secret\r\n"))
  r.receive = pack(s:receive("*l"))
  r.keep = pack(s:setkeepalive())
  r.tostring = tostring(s)
  s:close()
  answer(client, r)
end

-- ?port= of a redis: strings with a NUL byte where C takes strings.
routes["/nul"] = function(headers, client)
  local port = tonumber(C.query(headers).port)
  local function try(fn)
    local ok, a, b = pcall(fn)
    return { ok = ok, a = ok and tostring(a) or a, b = b }
  end
  local r = {}
  r.connect = try(function() return scgi.connect("127.0.0.1\0evil", port) end)
  r.pool = try(function() return socket.tcp():connect("127.0.0.1", port, { pool = "a\0b" }) end)
  local s = assert(scgi.connect("127.0.0.1", port))
  s:settimeout(0.2)
  r.option = try(function() return s:setoption("keepalive\0x") end)
  r.pattern = try(function() return s:receive("*l\0x") end)
  r.name = try(function() return s:sslhandshake(false, "localhost\0.evil", false) end)
  r.unix = try(function() return scgi.connect("/nonexistent\0x") end)
  s:close()
  answer(client, r)
end

-- ?port= of a redis (that answers nothing unasked): a task parks in receive on a socket without
-- a timeout; the handler's to-be-closed variable for it goes out of scope: the task wakes.
routes["/close-wakes"] = function(headers, client)
  local port = tonumber(C.query(headers).port)
  client:budget(0)
  local s = assert(scgi.connect("127.0.0.1", port))
  local t0 = scgi.now()
  local task = scgi.spawn(function() return s:receive("*l") end)
  scgi.sleep(0.1)
  do
    local closing <close> = s
  end
  local r = { waited = pack(scgi.wait(task)) }
  r.elapsed = scgi.now() - t0
  answer(client, r)
end

-- ?n=: n connects that raise (a port out of range, a unix path too long, a bad pool name); how
-- many raised.
routes["/raising-connects"] = function(headers, client)
  local n, raised = tonumber(C.query(headers).n), 0
  local long = "/" .. ("x"):rep(200)
  for i = 1, n do
    local which = i % 3
    local ok = pcall(function()
      if which == 0 then return socket.tcp():connect("127.0.0.1", 70000) end
      if which == 1 then return require("socket.unix")():connect(long) end
      return socket.tcp():connect("127.0.0.1", 1, { pool = {} })
    end)
    if not ok then raised = raised + 1 end
  end
  collectgarbage()
  answer(client, { raised = raised })
end

return R.handler(routes)
