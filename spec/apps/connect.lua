-- spec/apps/connect.lua: routes for spec/connect_spec.lua: scgi.connect (cooperative sockets) with
-- redis-lua on a real redis-server, and with the scripted peer spec/apps/connect_peer.lua.
-- Every route answers what the socket calls returned as Lua source the spec loads back.
package.path = package.path .. ";/usr/share/lua/5.3/?.lua"
local scgi = require "scgi"
local R = require "router"

-- With SOCK_CONNECT_AT_LOAD set ("HOST:PORT" or "/unix/path"), the app calls scgi.connect while
-- it is loaded (outside any request): loading must fail with a clear message.
local at_load = os.getenv("SOCK_CONNECT_AT_LOAD")
if at_load then
  local host, port = at_load:match("^(.*):(%d+)$")
  local s, err
  if host then s, err = scgi.connect(host, tonumber(port)) else s, err = scgi.connect(at_load) end
  io.stderr:write("connect.lua: scgi.connect at load time returned ", tostring(s), ", ",
    tostring(err), "\n")
end

local routes = {}

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The query string with its values decoded.
local function query(headers)
  local q = R.query(headers)
  for k, v in pairs(q) do q[k] = unescape(v) end
  return q
end

local function value(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil then return tostring(v) end
  return ("%q"):format(type(v) .. ": " .. tostring(v))
end

-- A table of plain values (strings, numbers, booleans; nested tables one level) as Lua source.
local function serialise(t)
  local out = { "return {" }
  for k, v in pairs(t) do
    if type(v) == "table" then
      local inner = {}
      for k2, v2 in pairs(v) do inner[#inner + 1] = ("[%s]=%s,"):format(value(k2), value(v2)) end
      out[#out + 1] = ("[%s]={%s},"):format(value(k), table.concat(inner))
    else
      out[#out + 1] = ("[%s]=%s,"):format(value(k), value(v))
    end
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n")
end

-- The values of a call as a table with n (so trailing nils show).
local function pack(...) return { n = select("#", ...), ... } end

local function answer(client, t)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", serialise(t))
end

-- scgi.connect to ?port= on 127.0.0.1 (or ?host=), or to the unix ?path=.
local function connect(q)
  if q.path then return scgi.connect(q.path) end
  return scgi.connect(q.host or "127.0.0.1", tonumber(q.port))
end

routes["/hello"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nHello world\n")
end

-- ?port= or ?path= of a redis-server, ?id=N, ?pause=S: through redis-lua on scgi.connect, INCRs
-- "counter", SETs and GETs a 10 KB value under "value:N", BLPOPs an empty list for ?pause=
-- seconds, GETs once more, and answers what it saw.
routes["/redis"] = function(headers, client)
  local q = query(headers)
  local id = q.id or "0"
  local r = {}
  local sock, err = connect(q)
  if not sock then
    r.error = "connect: " .. tostring(err)
    return answer(client, r)
  end
  local ok, msg = pcall(function()
    local redis = require "redis"
    local db = redis.connect({ socket = sock })
    r.ping = db:ping()
    r.counter = db:incr("counter")
    local big = ("%05d:"):format(tonumber(id)):rep(10240 // 6 + 1):sub(1, 10240)
    r.set = db:set("value:" .. id, big)
    local got = db:get("value:" .. id)
    r.get_same = got == big
    r.get_len = got and #got
    local pause = tonumber(q.pause) or 0
    if pause > 0 then
      local t0 = scgi.now()
      r.blpop = value(db:blpop("empty:list:" .. id, pause))
      r.blpop_elapsed = scgi.now() - t0
    end
    local again = db:get("value:" .. id)
    r.get_again_same = again == big
  end)
  if not ok then r.error = tostring(msg) end
  sock:close()
  answer(client, r)
end

-- ?port= (peer) or ?path=; ?send= a line to send first (a command for the peer), ?timeout=,
-- ?pattern= ("*l", "l", "*a", "a" or a count), ?prefix=, ?times= receives (default 1): answers
-- each receive's values and how long it took.
routes["/receive"] = function(headers, client)
  local q = query(headers)
  local sock, err = connect(q)
  if not sock then return answer(client, { connect_error = tostring(err) }) end
  local r = {}
  if q.send then r.send = pack(sock:send(q.send .. "\n")) end
  if q.timeout then r.settimeout = pack(sock:settimeout(tonumber(q.timeout))) end
  local pattern = tonumber(q.pattern) or q.pattern
  for i = 1, tonumber(q.times) or 1 do
    local t0 = scgi.now()
    r[i] = pack(sock:receive(pattern, q.prefix))
    r["elapsed" .. i] = scgi.now() - t0
    r["dirty" .. i] = sock:dirty()
  end
  sock:close()
  answer(client, r)
end

-- ?host=&port= or ?path=: what scgi.connect returned (the socket is closed again).
routes["/connect"] = function(headers, client)
  local q = query(headers)
  local t0 = scgi.now()
  local v = pack(pcall(connect, q))
  local r = { ok = v[1], n = v.n - 1, first_type = type(v[2]), second = v[3], elapsed = scgi.now() - t0 }
  if not v[1] then r.error = tostring(v[2]) end
  if type(v[2]) == "userdata" then
    r.fd = v[2]:getfd()
    v[2]:close()
  end
  answer(client, r)
end

-- ?port= of the peer: sends "echo", then send(data, ?i=, ?j=) (absent: not passed), then
-- shutdown("send"), then receives everything the peer echoed.
routes["/send"] = function(headers, client)
  local q = query(headers)
  local sock = assert(connect(q))
  sock:settimeout(5)
  local r = {}
  r.cmd = pack(sock:send("echo\n"))
  local data = q.data or "hello"
  if q.j then
    r.send = pack(sock:send(data, tonumber(q.i), tonumber(q.j)))
  elseif q.i then
    r.send = pack(sock:send(data, tonumber(q.i)))
  else
    r.send = pack(sock:send(data))
  end
  r.shutdown = pack(sock:shutdown("send"))
  r.echoed = pack(sock:receive("*a"))
  sock:close()
  answer(client, r)
end

-- ?port= or ?path= of a redis-server, ?mb=: SETs and GETs a value of mb MiB through redis-lua
-- (more than the socket buffers take at once, so send and receive both park on the way).
routes["/redis-big"] = function(headers, client)
  local q = query(headers)
  local size = math.floor((tonumber(q.mb) or 4) * 1048576)
  local sock = assert(connect(q))
  local r = {}
  local ok, msg = pcall(function()
    local db = require("redis").connect({ socket = sock })
    local big = ("0123456789abcdefghijklmnopqrstuvwxyz\r\n"):rep(size // 38 + 1):sub(1, size)
    r.set = db:set("big:" .. (q.id or "0"), big)
    local got = db:get("big:" .. (q.id or "0"))
    r.len = got and #got
    r.same = got == big
    r.strlen = db:strlen("big:" .. (q.id or "0"))
    r.del = db:del("big:" .. (q.id or "0"))
  end)
  if not ok then r.error = tostring(msg) end
  sock:close()
  answer(client, r)
end

-- Misuse inside a request: a closed socket, bad patterns, scgi.connect from a coroutine the
-- handler made. ?port= of the peer (or ?path=).
routes["/misuse"] = function(headers, client)
  local q = query(headers)
  local r = {}
  local sock = assert(connect(q))
  r.tostring_open = tostring(sock)
  r.fd_open = sock:getfd()
  r.setoption = pack(sock:setoption("tcp-nodelay", true))
  r.settimeout = pack(sock:settimeout(1))
  r.bad_pattern = pack(pcall(sock.receive, sock, "*x"))
  r.bad_pattern2 = pack(pcall(sock.receive, sock, {}))
  r.negative = pack(pcall(sock.receive, sock, -1))
  r.close = pack(sock:close())
  r.close_again = pack(sock:close())
  r.tostring_closed = tostring(sock)
  r.fd_closed = sock:getfd()
  r.send_closed = pack(pcall(sock.send, sock, "x"))
  r.receive_closed = pack(pcall(sock.receive, sock, "*l"))
  r.shutdown_closed = pack(pcall(sock.shutdown, sock))
  r.not_a_socket = pack(pcall(sock.receive, {}, "*l"))
  -- scgi.connect in a coroutine the handler made (TCP: the connect must wait, so it parks)
  local co = coroutine.wrap(function() return connect(q) end)
  r.in_coroutine = pack(pcall(co))
  if type(r.in_coroutine[2]) == "userdata" then r.in_coroutine[2]:close() end
  r.in_coroutine[2] = tostring(r.in_coroutine[2])
  answer(client, r)
end

-- A socket shared between requests, kept under ?id=.
local shared = {}

-- ?port= of the peer, ?id=, ?timeout=: connects, keeps the socket under id, and waits for a line
-- the silent peer never sends.
routes["/shared-wait"] = function(headers, client)
  local q = query(headers)
  local sock = assert(connect(q))
  shared[q.id] = sock
  if q.timeout then sock:settimeout(tonumber(q.timeout)) end
  local t0 = scgi.now()
  local v = pack(pcall(sock.receive, sock, "*l"))
  answer(client, { result = v, elapsed = scgi.now() - t0 })
end

-- ?id=: receive on the socket another request waits on (must raise).
routes["/shared-receive"] = function(headers, client)
  local sock = shared[query(headers).id]
  answer(client, { result = pack(pcall(sock.receive, sock, "*l")) })
end

-- ?id=: closes the socket another request waits on.
routes["/shared-close"] = function(headers, client)
  local sock = shared[query(headers).id]
  answer(client, { result = pack(sock:close()) })
end

return R.handler(routes)
