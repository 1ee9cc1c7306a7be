-- spec/helper.lua: starts the real scgi-lua and a real nginx for the specs, speaks SCGI and HTTP
-- to them over real sockets, and holds the small tools several specs use (logs, loads, stats).
-- Every wait is bounded; every process started here is stopped.
local socket = require "socket"
local unix = require "socket.unix"
local luassert = require "luassert"
local busted = require "busted"

local H = {}

H.root = os.getenv("SCGI_ROOT") or "."
H.build = os.getenv("SCGI_BUILD") or (H.root .. "/build")
H.program = os.getenv("SCGI_LUA") or (H.build .. "/scgi-lua")
H.apps = H.root .. "/spec/apps"

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
H.quote = q

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
H.read_file = read_file

function H.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- What the shell command writes on stdout.
function H.sh_out(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

-- True if something (a file of any kind) is at path.
function H.exists(path) return sh("test -e " .. q(path)) == true end

-- True if the command is on PATH.
function H.have(cmd) return sh("command -v " .. cmd .. " >/dev/null 2>&1") == true end

-- The spec process's user id, as text ("0" for root).
function H.uid() return (H.sh_out("id -u"):gsub("%s+$", "")) end

-- The non-empty lines of text, in order.
function H.lines(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- How many times the plain string `what` stands in text (not overlapping).
function H.count(text, what)
  local n, i = 0, 1
  while true do
    local s, e = text:find(what, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

function H.sleep(s) socket.sleep(s) end
function H.now() return socket.gettime() end

-- Polls fn every 20 ms until it returns a true value or `timeout` seconds pass.
function H.wait_for(fn, timeout, what)
  local deadline = socket.gettime() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  error("timed out waiting for " .. (what or "a condition"), 2)
end

local dirs = {}

-- A fresh private directory, readable by others (nginx may run as another user); H.cleanup
-- removes it.
function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/scgi-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  sh("chmod 755 " .. q(dir))
  dirs[#dirs + 1] = dir
  return dir
end

function H.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local started = {}

-- Starts `cmd` in the background; returns a process with pid, log path, alive(), wait(), kill().
-- H.cleanup stops it if it still runs.
function H.spawn(cmd, dir, name)
  name = name or "proc"
  local log, pidf, st = dir .. "/" .. name .. ".log", dir .. "/" .. name .. ".pid",
    dir .. "/" .. name .. ".status"
  os.remove(st)
  local script = cmd .. " >>" .. q(log) .. " 2>&1 & echo $! >" .. q(pidf) .. "; wait $!; echo $? >" .. q(st)
  sh("sh -c " .. q(script) .. " </dev/null >/dev/null 2>&1 &")
  local pid = H.wait_for(function()
    local s = read_file(pidf)
    return s and tonumber(s:match("%d+"))
  end, 5, name .. "'s pid")
  local proc = { pid = pid, log = log, status_file = st, name = name }
  function proc.alive() return read_file(st) == nil end
  function proc.kill(sig) sh("kill -" .. (sig or "TERM") .. " " .. pid .. " 2>/dev/null") end
  function proc.wait(timeout)
    return H.wait_for(function()
      local s = read_file(st)
      return s and tonumber(s:match("%d+"))
    end, timeout or 10, name .. " to exit")
  end
  function proc.output() return read_file(log) or "" end
  started[#started + 1] = proc
  return proc
end

-- Kills a process that still runs (SIGKILL) and waits for it, at most 5 s.
function H.kill(proc)
  if proc and proc.alive() then
    proc.kill("KILL")
    pcall(proc.wait, 5)
  end
end

-- Waits for a scgi-lua's "listening on" line and returns what follows it; fails at once if the
-- process exits first.
function H.listening(proc)
  return H.wait_for(function()
    local out = proc.output()
    if not proc.alive() then error("scgi-lua exited early:\n" .. out, 3) end
    return out:match("listening on ([^\n]+) %(%d+ workers?[^)\n]*%)")
  end, 10, "scgi-lua to listen")
end

-- Starts scgi-lua with the app and options (a table of option -> value, or a list of raw args);
-- waits for its "listening on" line and returns the server with its address. With expect_fail
-- it returns at once, without waiting.
function H.start(app, opts)
  opts = opts or {}
  local dir = opts.dir or H.tmpdir()
  local args = { q(opts.program or H.program), q(app:find("/") and app or (H.apps .. "/" .. app)) }
  local sock = opts.socket
  if sock == nil then sock = dir .. "/scgi.sock" end
  if sock then args[#args + 1] = "--socket " .. q(sock) end
  if opts.workers ~= false then args[#args + 1] = "--workers " .. (opts.workers or 1) end
  for k, v in pairs(opts.options or {}) do args[#args + 1] = "--" .. k .. " " .. q(v) end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local env = opts.env and (opts.env .. " ") or ""
  local proc = H.spawn(env .. "exec " .. table.concat(args, " "), dir, "scgi")
  proc.dir = dir
  function proc.stop()
    proc.kill("TERM")
    return proc.wait(40)
  end
  if opts.expect_fail then return proc end
  proc.listen = H.listening(proc)
  proc.addr = proc.listen:match("^unix:(.*)$") or proc.listen
  return proc
end

-- For a describe block: starts scgi-lua on the app with H.start's options (or the options a
-- function returns then) before the block's first case; after its last, stops the nginx in front
-- of it (H.nginx_for), then the server, which must exit 0, and cleans up. Returns the server,
-- whose fields are filled in when it starts.
function H.serve(app, opts)
  local srv = { fronts = {} }
  busted.setup(function()
    for k, v in pairs(H.start(app, type(opts) == "function" and opts() or opts)) do srv[k] = v end
  end)
  busted.teardown(function()
    for _, ng in ipairs(srv.fronts) do ng.stop() end
    if srv.stop then luassert.equal(0, srv.stop()) end
    H.cleanup()
  end)
  return srv
end

-- For a describe block served by H.serve: a private nginx in front of srv (H.nginx's extra_conf),
-- started after srv and stopped before it. Returns the nginx, whose fields are filled in when it
-- starts.
function H.nginx_for(srv, extra_conf)
  local ng = {}
  busted.setup(function()
    for k, v in pairs(H.nginx(srv.addr, extra_conf)) do ng[k] = v end
    srv.fronts[#srv.fronts + 1] = ng
  end)
  return ng
end

-- Starts scgi-lua (H.start's options) when its readiness does not show as a "listening on" line
-- in its output; ready(proc) tells when it serves.
function H.start_quiet(app, opts, ready)
  opts.expect_fail = true
  local proc = H.start(app, opts)
  H.wait_for(function()
    if not proc.alive() then error("scgi-lua exited early:\n" .. proc.output(), 3) end
    return ready(proc)
  end, 10, "scgi-lua to serve")
  return proc
end

-- Runs the program with the (already quoted) arguments, bounded to 10 s (a program that would
-- start serving is killed: code 124); returns code, stdout, stderr. prefix goes before the
-- program (env, setpriv).
function H.run(args, prefix)
  local dir = H.tmpdir()
  local out, err = dir .. "/out", dir .. "/err"
  local rc = tonumber(H.sh_out(("%s timeout 10 %s %s >%s 2>%s </dev/null; echo $?"):format(prefix or "",
    q(H.program), args, q(out), q(err))):match("%d+"))
  local o, e = read_file(out) or "", read_file(err) or ""
  sh("rm -rf " .. q(dir))
  return rc, o, e
end

-- Stops everything the specs started that is still running (call from after_each/finally).
function H.cleanup()
  for _, p in ipairs(started) do H.kill(p) end
  started = {}
  for _, d in ipairs(dirs) do
    if d:match("^/tmp/scgi%-spec%.%w+$") then sh("rm -rf " .. q(d)) end
  end
  dirs = {}
end

-- For a teardown: stops srv if it started and still runs, then everything else (H.cleanup); a
-- server that started must have exited 0 (one that died before is a failure too).
function H.stop_clean(srv)
  local rc = srv and srv.alive() and srv.stop()
  H.cleanup()
  if srv then luassert.equal(0, rc) end
end

-- The log text a server wrote since `mark` (a length of proc.output()).
function H.log_since(srv, mark) return srv.output():sub(mark + 1) end

-- Waits (bounded) until the log written since `mark` holds `text` (plain), and returns that log.
function H.wait_log(srv, mark, text, timeout)
  return H.wait_for(function()
    local s = H.log_since(srv, mark)
    return s:find(text, 1, true) and s
  end, timeout or 5, "the log line " .. ("%q"):format(text))
end

-- Waits (bounded) until the log written since `mark` matches the Lua pattern `pat`, and returns
-- that log.
function H.wait_log_match(srv, mark, pat, timeout)
  return H.wait_for(function()
    local s = H.log_since(srv, mark)
    return s:find(pat) and s
  end, timeout or 5, "a log line matching " .. ("%q"):format(pat))
end

-- A connected socket to ADDR (a unix path, host:port or [v6]:port), with a timeout.
function H.connect(addr, timeout)
  local s, ok, err
  if addr:sub(1, 1) == "/" then
    s = unix.stream and unix.stream() or unix()
    ok, err = s:connect(addr)
  else
    local host, port = addr:match("^%[(.*)%]:(%d+)$")
    if not host then host, port = addr:match("^(.*):(%d+)$") end
    s = host:find(":") and socket.tcp6() or socket.tcp()
    ok, err = s:connect(host, tonumber(port))
  end
  if not ok then
    s:close()
    return nil, err
  end
  s:settimeout(timeout or 20)
  return s
end

-- True if something accepts a connection at addr now.
function H.can_connect(addr)
  local s = H.connect(addr, 1)
  if s then s:close() end
  return s ~= nil
end

-- The SCGI bytes for a request: headers is a list of {name, value}; CONTENT_LENGTH and SCGI come
-- first unless raw is set.
function H.encode(headers, body, raw)
  body = body or ""
  local parts = {}
  if not raw then
    parts[1] = "CONTENT_LENGTH\0" .. #body .. "\0SCGI\0" .. "1\0"
  end
  for _, h in ipairs(headers or {}) do parts[#parts + 1] = h[1] .. "\0" .. h[2] .. "\0" end
  local block = table.concat(parts)
  return #block .. ":" .. block .. ",", body
end

-- Headers like nginx's scgi_params for METHOD URI.
function H.nginx_headers(method, uri, extra)
  local path, query = uri:match("^([^?]*)%??(.*)$")
  local h = {
    { "REQUEST_METHOD", method }, { "REQUEST_URI", uri }, { "QUERY_STRING", query },
    { "CONTENT_TYPE", "" }, { "DOCUMENT_URI", path }, { "DOCUMENT_ROOT", "/srv" },
    { "SCGI", nil }, { "SERVER_PROTOCOL", "HTTP/1.1" }, { "REQUEST_SCHEME", "http" },
    { "REMOTE_ADDR", "127.0.0.1" }, { "REMOTE_PORT", "40000" }, { "SERVER_PORT", "80" },
    { "SERVER_NAME", "localhost" }, { "HTTP_HOST", "localhost" },
  }
  local out = {}
  for _, v in ipairs(h) do if v[2] then out[#out + 1] = v end end
  for _, v in ipairs(extra or {}) do out[#out + 1] = v end
  return out
end

-- Sends raw bytes and reads the whole answer until the server closes.
function H.raw(addr, bytes, timeout)
  local s = assert(H.connect(addr, timeout))
  s:send(bytes)
  local data, err, partial = s:receive("*a")
  s:close()
  return data or partial, err
end

-- One SCGI request; returns status (number), response headers (lower-case names), body, raw.
function H.request(addr, method, uri, body, extra)
  local head, b = H.encode(H.nginx_headers(method or "GET", uri or "/", extra), body)
  local raw, err = H.raw(addr, head .. b)
  return H.parse(raw, err)
end

-- The body and headers of an answer (status, headers, body as H.request and H.http return them)
-- whose status must be 200.
local function answer_200(status, headers, body)
  luassert.equal(200, status)
  return body, headers
end

-- One SCGI request (H.request's arguments) that must answer 200; returns the body and headers.
function H.request_ok(addr, method, uri, body, extra)
  return answer_200(H.request(addr, method, uri, body, extra))
end

-- Connects to addr (H.connect, timeout default 10 s) and sends GET uri with nginx's headers;
-- returns the socket, whose answer the caller reads.
function H.send_get(addr, uri, timeout)
  local s = assert(H.connect(addr, timeout or 10))
  assert(s:send((H.encode(H.nginx_headers("GET", uri)))))
  return s
end

-- One SCGI request bounded to 10 s; returns status, body, the raw answer and the number of bytes
-- sent.
function H.scgi_get(addr, uri, method, body)
  local head, b = H.encode(H.nginx_headers(method or "GET", uri), body)
  local raw = H.raw(addr, head .. b, 10)
  local status, _, got = H.parse(raw)
  return status, got, raw, #head + #b
end

-- GET /hello answers 200 "Hello world\n" (the app's sign of life after a case).
function H.hello_ok(addr)
  luassert.equal("Hello world\n", (H.request_ok(addr, "GET", "/hello")))
end

-- GET uri on srv answers the server's own 500 (text/plain "500 Internal Server Error\n"); when
-- text is given, waits until the log written since the request holds it (plain). Returns that log.
function H.get_500(srv, uri, text)
  local mark = #srv.output()
  local status, headers, body = H.request(srv.addr, "GET", uri)
  luassert.equal(500, status)
  luassert.equal("text/plain", headers["content-type"])
  luassert.equal("500 Internal Server Error\n", body)
  if text then return H.wait_log(srv, mark, text) end
  return H.log_since(srv, mark)
end

function H.parse(raw, err)
  if not raw or raw == "" then return nil, nil, nil, raw, err end
  local top, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if not top then return nil, nil, nil, raw, err end
  local headers, status = {}, nil
  for line in (top .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then
      headers[k:lower()] = v
      if k:lower() == "status" then status = tonumber(v:match("^(%d+)")) end
    end
  end
  return status, headers, body, raw
end

-- Writes dir/nginx.conf for a private nginx on 127.0.0.1:port whose location / passes to the SCGI
-- target; http_extra goes in the http block, location_extra in the location.
local function nginx_conf(dir, port, target, http_extra, location_extra)
  H.write_file(dir .. "/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  client_max_body_size 0;
%s
  server {
    listen 127.0.0.1:%d;
    location / {
      include /etc/nginx/scgi_params;
      scgi_pass %s;
      %s
    }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, http_extra, port, target, location_extra or ""))
end

-- Starts the nginx configured in dir and waits until it listens on port.
local function nginx_run(dir, port)
  local proc = H.spawn("exec nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf") .. " -e " ..
    q(dir .. "/error.log"), dir, "nginx")
  H.wait_for(function()
    if not proc.alive() then error("nginx exited early:\n" .. proc.output() ..
      (read_file(dir .. "/error.log") or ""), 3) end
    local s = socket.tcp()
    s:settimeout(0.2)
    local ok = s:connect("127.0.0.1", port)
    s:close()
    return ok
  end, 10, "nginx to listen")
  proc.port = port
  function proc.stop()
    proc.kill("QUIT")
    return proc.wait(10)
  end
  function proc.error_log() return read_file(dir .. "/error.log") or "" end
  return proc
end

-- Starts a private nginx on a free 127.0.0.1 port that passes everything to the SCGI address.
function H.nginx(upstream, extra_conf)
  local dir, port = H.tmpdir(), H.free_port()
  local target = upstream:sub(1, 1) == "/" and ("unix:" .. upstream) or upstream
  nginx_conf(dir, port, target, "", extra_conf)
  return nginx_run(dir, port)
end

-- A private nginx whose `upstream app` holds the given 127.0.0.1 ports, each out for 1 s after a
-- failure; a request goes on to the next one on an error, a timeout or a 503.
function H.nginx_upstream(ports)
  local dir, port = H.tmpdir(), H.free_port()
  local servers = {}
  for _, p in ipairs(ports) do
    servers[#servers + 1] = ("    server 127.0.0.1:%d max_fails=1 fail_timeout=1s;"):format(p)
  end
  nginx_conf(dir, port, "app", "  upstream app {\n" .. table.concat(servers, "\n") .. "\n  }",
    "scgi_next_upstream error timeout http_503;\n      scgi_connect_timeout 1s;")
  return nginx_run(dir, port)
end

-- One HTTP/1.0 request to 127.0.0.1:port; returns status, headers (lower-case), body.
function H.http(port, method, path, body, headers)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(60)
  local lines = { ("%s %s HTTP/1.0"):format(method, path), "Host: localhost" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  s:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
  local raw = s:receive("*a")
  s:close()
  local top, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  local status = tonumber(top:match("^HTTP/%d%.%d (%d+)"))
  local hs = {}
  for k, v in top:gmatch("\r\n([^:]+):%s*([^\r]*)") do hs[k:lower()] = v end
  return status, hs, rest
end

-- An HTTP request through H.http that must answer 200; returns the body and headers.
function H.http_ok(port, method, path, body, headers)
  return answer_200(H.http(port, method, path, body, headers))
end

-- Sends raw bytes (an HTTP request as a client writes it, repeated lines and all) to
-- 127.0.0.1:port; returns status, headers (lower-case names; repeated ones joined by "\n"), body
-- and the raw answer.
function H.http_raw(port, bytes, timeout)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(timeout or 30)
  s:send(bytes)
  local raw, _, partial = s:receive("*a")
  s:close()
  raw = raw or partial or ""
  local top, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  if not top then return nil, {}, nil, raw end
  local hs = {}
  for k, v in top:gmatch("\r\n([^:]+):%s*([^\r]*)") do
    k = k:lower()
    hs[k] = hs[k] and (hs[k] .. "\n" .. v) or v
  end
  return tonumber(top:match("^HTTP/%d%.%d (%d+)")), hs, rest, raw
end

-- Concurrent HTTP/1.0 GETs to 127.0.0.1:port, one connection each, `conc` in flight, driven by
-- step(); each answer is recorded as { body, phase } with the phase current when it completed,
-- each failure (a status other than 200, an error, no answer in 15 s) as a message.
function H.http_load(port, path, conc)
  local L = { answers = {}, failures = {}, active = {}, phase = 1 }
  local req = ("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n"):format(path)
  local function start()
    local s = socket.tcp()
    s:settimeout(2)
    local ok, err = s:connect("127.0.0.1", port)
    if ok then ok, err = s:send(req) end
    if not ok then
      L.failures[#L.failures + 1] = "connect or send: " .. tostring(err)
      s:close()
      return
    end
    s:settimeout(0)
    L.active[#L.active + 1] = { s = s, buf = {}, t0 = H.now() }
  end
  local function finish(c, err)
    c.s:close()
    local raw = table.concat(c.buf)
    local status = tonumber(raw:match("^HTTP/%d%.%d (%d%d%d)"))
    if err or status ~= 200 then
      L.failures[#L.failures + 1] = ("phase %d: %s: %s"):format(L.phase, err or ("status " .. tostring(status)),
        raw:sub(1, 300))
    else
      L.answers[#L.answers + 1] = { body = raw:match("\r\n\r\n(.*)$"), phase = L.phase }
    end
  end
  function L.step(wait)
    while not L.stopping and #L.active < conc do start() end
    local socks = {}
    for i, c in ipairs(L.active) do socks[i] = c.s end
    if #socks == 0 then return end
    local readable = socket.select(socks, nil, wait or 0.02)
    local keep = {}
    for _, c in ipairs(L.active) do
      local done, err = false, nil
      if readable[c.s] then
        local data, e, partial = c.s:receive(65536)
        data = data or partial
        if data and #data > 0 then c.buf[#c.buf + 1] = data end
        if e == "closed" then
          done = true
        elseif e and e ~= "timeout" then
          done, err = true, e
        end
      elseif H.now() - c.t0 > 15 then
        done, err = true, "no answer in 15 s"
      end
      if done then finish(c, err) else keep[#keep + 1] = c end
    end
    L.active = keep
  end
  function L.run_for(seconds)
    local deadline = H.now() + seconds
    while H.now() < deadline do L.step(0.02) end
  end
  -- Drives the load until fn() is true (bounded).
  function L.run_until(fn, timeout, what)
    local deadline = H.now() + (timeout or 10)
    while not fn() do
      if H.now() > deadline then error("timed out waiting for " .. what, 2) end
      L.step(0.02)
    end
  end
  function L.drain()
    L.stopping = true
    local deadline = H.now() + 20
    while #L.active > 0 and H.now() < deadline do L.step(0.05) end
    assert(#L.active == 0, "requests still unanswered after 20 s")
  end
  -- The answers whose body is the line `body` (in `phase`, or in any).
  function L.count(body, phase)
    local n = 0
    for _, a in ipairs(L.answers) do
      if a.body == body .. "\n" and (phase == nil or a.phase == phase) then n = n + 1 end
    end
    return n
  end
  return L
end

-- The serving process of a server started with H.start: the supervisor's one child (where its
-- workers, descriptors and privileges are), or the server itself under --no-master.
function H.serving_pid(srv, timeout)
  return H.wait_for(function()
    local kids = read_file("/proc/" .. srv.pid .. "/task/" .. srv.pid .. "/children") or ""
    local pid = tonumber(kids:match("%d+"))
    if pid then return pid end
    if srv.output():find("no-master", 1, true) then return srv.pid end
  end, timeout or 10, "the serving process of " .. srv.pid)
end

-- The signal a serving process that crashes dies of: SIGSEGV, or SIGABRT in an ASan build
-- (ASan catches the SIGSEGV, reports it and aborts).
function H.crash_signal()
  if H.asan == nil then
    H.asan = H.sh_out("ldd " .. q(H.program) .. " 2>/dev/null"):find("libasan", 1, true) ~= nil
  end
  return H.asan and 6 or 11
end

-- The pids of a process's children (the supervisor's serving processes).
function H.children(pid)
  local out = {}
  for p in (read_file("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""):gmatch("%d+") do
    out[#out + 1] = tonumber(p)
  end
  return out
end

-- The pid of the process that answers GET /pid (the spec apps crash.lua and others say it).
function H.pid_of(srv)
  local status, body = H.scgi_get(srv.addr, "/pid")
  luassert.equal(200, status)
  return tonumber(body)
end

-- Number of open descriptors of a process.
function H.fd_count(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

-- The address of a server's stats endpoint, from its "stats on" line.
function H.stats_addr(srv)
  return H.wait_for(function() return srv.output():match("stats on ([^\n]+)") end, 5, "the stats line")
end

-- GET path (default /) from the stats endpoint at addr; returns status, Content-Type, body.
function H.get_stats(addr, path)
  local s = assert(H.connect(addr, 5))
  s:send(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n"):format(path or "/"))
  local raw = s:receive("*a")
  s:close()
  local status = tonumber(raw:match("^HTTP/1%.%d (%d+)"))
  local ctype = raw:match("\r\n[Cc]ontent%-[Tt]ype: ([^\r]*)")
  return status, ctype, raw:match("\r\n\r\n(.*)$")
end

-- Polls the JSON figures of the stats endpoint at addr until ok(figures) is true (a request's
-- counters are added as its connection closes, which the client may see first); returns them.
function H.wait_stats(addr, ok, timeout, what)
  local last
  return H.wait_for(function()
    local status, _, body = H.get_stats(addr, "/")
    if status ~= 200 then return nil end
    last = H.json_decode(body)
    return ok(last) and last
  end, timeout or 5, what or "the figures")
end

-- A minimal JSON decoder (objects, arrays, strings, numbers, true, false, null).
function H.json_decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function char() return s:sub(pos, pos) end
  local function expect(c)
    ws()
    if char() ~= c then error(("JSON: %q expected at %d in %s"):format(c, pos, s)) end
    pos = pos + 1
  end
  local esc = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
  local function str()
    expect('"')
    local out = {}
    while true do
      local c = char()
      if c == '"' then
        pos = pos + 1
        return table.concat(out)
      elseif c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        if e == "u" then
          out[#out + 1] = utf8.char(tonumber(s:sub(pos + 2, pos + 5), 16))
          pos = pos + 6
        else
          out[#out + 1] = assert(esc[e], "JSON: bad escape")
          pos = pos + 2
        end
      elseif c == "" then
        error("JSON: unterminated string")
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  local value
  -- The items of an object or array up to `close`; item() reads one (and its key).
  local function items(close, item)
    pos = pos + 1
    ws()
    if char() == close then
      pos = pos + 1
      return
    end
    while true do
      item()
      ws()
      local d = char()
      pos = pos + 1
      if d == close then return end
      if d ~= "," then error("JSON: , or " .. close .. " expected at " .. pos - 1) end
    end
  end
  function value()
    ws()
    local c = char()
    if c == "{" then
      local t = {}
      items("}", function()
        ws()
        local k = str()
        expect(":")
        t[k] = value()
      end)
      return t
    elseif c == "[" then
      local t = {}
      items("]", function() t[#t + 1] = value() end)
      return t
    elseif c == '"' then
      return str()
    elseif s:find("^true", pos) then
      pos = pos + 4
      return true
    elseif s:find("^false", pos) then
      pos = pos + 5
      return false
    elseif s:find("^null", pos) then
      pos = pos + 4
      return nil
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num then error("JSON: unexpected " .. c .. " at " .. pos) end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  local v = value()
  ws()
  if pos <= #s then error("JSON: trailing bytes at " .. pos) end
  return v
end

---- for the runtime specs: answers as Lua source, peers on loopback ----

local function urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- "/route?k=v&..." with the values url-encoded (keys in order).
function H.uri(route, params)
  local keys = {}
  for k in pairs(params or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. urlencode(params[k]) end
  return route .. (#parts > 0 and ("?" .. table.concat(parts, "&")) or "")
end

-- The Lua table an answer's body holds (spec/apps/runtime_common.lua writes them); fails naming
-- the request unless the status is 200.
function H.decode(status, body, raw, what)
  assert(status == 200, ("%s: status %s, answer: %s"):format(what, tostring(status), tostring(raw)))
  return assert(load(body, "=" .. what))()
end

-- GET route?params, whose answer is a Lua table (H.decode).
function H.call(addr, route, params)
  local u = H.uri(route, params)
  local status, _, body, raw = H.request(addr, "GET", u)
  return H.decode(status, body, raw, u)
end

-- Sends GET route?params and returns at once a function that reads the answer: status,
-- headers, body, raw (H.parse). The connection waits up to `timeout` seconds (default 30).
function H.start_request(addr, route, params, timeout)
  local u = H.uri(route, params)
  local s = assert(H.connect(addr, timeout or 30))
  assert(s:send((H.encode(H.nginx_headers("GET", u), ""))))
  return function()
    local raw, err, partial = s:receive("*a")
    s:close()
    return H.parse(raw or partial, err)
  end, u
end

-- H.start_request for an answer that is a Lua table: the function returned reads it (H.decode).
function H.start_call(addr, route, params, timeout)
  local finish, u = H.start_request(addr, route, params, timeout)
  return function()
    local status, _, body, raw = finish()
    return H.decode(status, body, raw, u)
  end, u
end

-- Runs the finishers H.start_call returned and returns their answers, in order.
function H.finish_all(pending)
  local out = {}
  for i, f in ipairs(pending) do out[i] = f() end
  return out
end

-- A throwaway self-signed certificate for CN localhost with the subjectAltName san (default
-- "DNS:localhost,IP:127.0.0.1"), made with openssl in dir under the name `name` (default "cert");
-- returns the certificate's and the key's paths.
function H.self_signed(dir, san, name)
  name = name or "cert"
  local cert, key = dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".key"
  local rc = H.sh_out(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost " ..
    "-addext %s -keyout %s -out %s >/dev/null 2>&1; echo $?")
    :format(q("subjectAltName=" .. (san or "DNS:localhost,IP:127.0.0.1")), q(key), q(cert)))
  assert(tonumber(rc) == 0 and H.exists(cert), "openssl could not make a certificate (is openssl installed?)")
  return cert, key
end

-- The HTTP peer H.http_peer runs: python3's threading HTTP server (TLS with a certificate), a
-- thread per connection (TLS handshakes too), answering GET /PATH?delay=S after S seconds.
local HTTP_PEER = [[
import ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

cert, key = (sys.argv[1], sys.argv[2]) if len(sys.argv) > 2 else (None, None)
lock, served = threading.Lock(), [0]

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        delay = float(parse_qs(url.query).get("delay", ["0"])[0])
        time.sleep(delay)
        with lock:
            served[0] += 1
            n = served[0]
        body = ("%s after %g s (answer %d)\n" % (url.path, delay, n)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def finish_request(self, request, client_address):
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

srv = Server(("127.0.0.1", 0), Handler)
print("peer listening on %d" % srv.server_address[1], flush=True)
srv.serve_forever()
]]

-- Starts the python3 HTTP peer on a free 127.0.0.1 port (HTTPS with opts.cert and opts.key): GET
-- /PATH?delay=S answers "/PATH after S s (answer N)\n" after S seconds, many at once. Returns the
-- process with its port; H.cleanup stops it.
function H.http_peer(opts)
  opts = opts or {}
  local dir = opts.dir or H.tmpdir()
  H.write_file(dir .. "/http_peer.py", HTTP_PEER)
  local args = opts.cert and (" " .. q(opts.cert) .. " " .. q(opts.key)) or ""
  local proc = H.spawn("exec python3 -u " .. q(dir .. "/http_peer.py") .. args, dir, "http_peer")
  proc.port = tonumber(H.wait_for(function()
    if not proc.alive() then error("the HTTP peer exited early:\n" .. proc.output(), 3) end
    return proc.output():match("peer listening on (%d+)")
  end, 10, "the HTTP peer to listen"))
  return proc
end

-- A raw RESP exchange with the redis-server at addr (no redis-lua): the first reply line.
function H.redis_line(addr, command)
  local s = H.connect(addr, 2)
  if not s then return nil end
  s:send(command .. "\r\n")
  local line = s:receive("*l")
  s:close()
  return line
end

-- Starts Debian's redis-server on a free 127.0.0.1 port in a private directory (fails the spec
-- naming the package if it is missing); returns the process with its port and addr.
function H.redis(extra_args)
  assert(sh("test -x /usr/bin/redis-server") == true, "redis-server is not installed: the runtime " ..
    "specs need Debian's redis-server (apt-get install redis-server)")
  local dir, port = H.tmpdir(), H.free_port()
  local proc = H.spawn(("exec /usr/bin/redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no " ..
    "--daemonize no --dir %s %s"):format(port, q(dir), extra_args or ""), dir, "redis")
  proc.port, proc.addr = port, "127.0.0.1:" .. port
  H.wait_for(function()
    if not proc.alive() then error("redis-server exited early:\n" .. proc.output(), 3) end
    return H.redis_line(proc.addr, "PING") == "+PONG"
  end, 10, "redis-server to answer PING")
  -- total_connections_received of INFO stats: how many connections redis accepted so far, asked
  -- over one connection the spec keeps (so asking does not count)
  local admin = assert(H.connect(proc.addr, 5))
  function proc.command(command)
    assert(admin:send(command .. "\r\n"))
    local line = assert(admin:receive("*l"))
    local n = tonumber(line:match("^%$(%d+)"))
    if n then return assert(admin:receive(n + 2)):sub(1, n) end
    return line
  end
  function proc.connections()
    return tonumber(proc.command("INFO stats"):match("total_connections_received:(%d+)"))
  end
  return proc
end

return H
