-- spec/helper.lua: starts the real scgi-lua and a real nginx for the specs, and speaks SCGI and
-- HTTP to them over real sockets. Every wait is bounded; every process started here is stopped.
local socket = require "socket"
local unix = require "socket.unix"

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

-- Starts `cmd` in the background; returns a process with pid, log path, alive(), wait(), kill().
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
  return proc
end

local started = {}

-- Starts scgi-lua with the app and options (a table of option -> value, or a list of raw args);
-- waits for its "listening on" line and returns the server with its address.
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
  started[#started + 1] = proc
  if opts.expect_fail then return proc end
  local line = H.wait_for(function()
    local out = proc.output()
    if not proc.alive() then error("scgi-lua exited early:\n" .. out, 3) end
    return out:match("listening on ([^\n]+) %(%d+ workers?%)")
  end, 10, "scgi-lua to listen")
  proc.listen = line
  proc.addr = line:match("^unix:(.*)$") or line
  function proc.stop()
    proc.kill("TERM")
    return proc.wait(40)
  end
  return proc
end

-- Stops everything the specs started that is still running (call from after_each/finally).
function H.cleanup()
  for _, p in ipairs(started) do
    if p.alive() then
      p.kill("KILL")
      pcall(p.wait, 5)
    end
  end
  started = {}
  for _, d in ipairs(dirs) do
    if d:match("^/tmp/scgi%-spec%.%w+$") then sh("rm -rf " .. q(d)) end
  end
  dirs = {}
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

-- Starts a private nginx on a free 127.0.0.1 port that passes everything to the SCGI address.
function H.nginx(upstream, extra_conf)
  local dir = H.tmpdir()
  local port = H.free_port()
  local target = upstream:sub(1, 1) == "/" and ("unix:" .. upstream) or upstream
  local conf = ([[
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
  server {
    listen 127.0.0.1:%d;
    location / {
      include /etc/nginx/scgi_params;
      scgi_pass %s;
      %s
    }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, port, target, extra_conf or "")
  H.write_file(dir .. "/nginx.conf", conf)
  local proc = H.spawn("exec nginx -p " .. q(dir) .. " -c " .. q(dir .. "/nginx.conf") .. " -e " ..
    q(dir .. "/error.log"), dir, "nginx")
  started[#started + 1] = proc
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

-- Number of open descriptors of a process.
function H.fd_count(pid)
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

return H
