-- scgi.test: tests handlers against the real program. T.start runs scgi-lua on an app file on a
-- private temporary socket; app:request speaks SCGI to it the way nginx 1.22 with Debian's
-- scgi_params does, and parses the CGI answer; app:stop stops it and gives the exit status.
-- Pure Lua 5.4 on LuaSocket; made for busted, usable from any test runner. docs/api.md, "Testing".
local socket = require "socket"
local unix = require "socket.unix"

local T = {}

-- Default bounds, in seconds: start (until the "listening on" line), one request (all of it),
-- stop (SIGTERM to exit; over the program's default --grace of 30 s).
T.start_timeout, T.timeout, T.stop_timeout = 30, 10, 40

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The exit status written by the wrapper once the program ended, or nil while it runs.
local function exit_status(self)
  if self.status == nil then
    local s = read_file(self.dir .. "/status")
    self.status = s and tonumber(s:match("%d+"))
  end
  return self.status
end

-- The last lines of text (at most n), for error messages.
local function tail(text, n)
  local lines = {}
  for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
  local first = math.max(1, #lines - (n or 20) + 1)
  return table.concat(lines, "\n", first)
end

-- Internal argument errors: raised as a table, re-raised at the caller's level by the public call.
local function fail(msg) error({ "scgi.test: " .. msg }) end

local App = {}
App.__index = App

-- The program's output (stderr and stdout) so far.
function App:log()
  if self.saved_log then return self.saved_log end
  return read_file(self.dir .. "/log") or ""
end

-- The end of the log, set apart, for error messages.
function App:log_tail()
  local t = tail(self:log())
  return "\n--- the end of scgi-lua's log:\n" .. (t ~= "" and t or "(empty)") .. "\n---"
end

-- True while the program runs.
function App:running() return exit_status(self) == nil end

-- Sends a signal ("TERM", "HUP", "USR1", ...) to the program if it still runs.
function App:signal(sig)
  if exit_status(self) == nil then
    os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", self.pid))
  end
  return self
end

-- Waits at most timeout seconds for the program to exit; its status, or nil.
local function wait_exit(self, timeout)
  local deadline = socket.gettime() + timeout
  repeat
    local st = exit_status(self)
    if st then return st end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return exit_status(self)
end

-- Keeps the log and removes the private directory (the socket went with the program).
local function forget(self)
  if self.gone then return end
  self.saved_log = read_file(self.dir .. "/log") or ""
  self.gone = true
  if self.dir:match("/scgi%-test%.[%w]+$") then os.execute("rm -rf " .. q(self.dir)) end
end

-- Stops without raising: SIGTERM, then SIGKILL after `timeout` seconds (finalizers, errors).
local function stop_quietly(self, timeout)
  if self.gone then return self.status end
  self:signal("TERM")
  if not wait_exit(self, timeout or 5) then
    self:signal("KILL")
    wait_exit(self, 5)
  end
  forget(self)
  return self.status
end

-- Graceful stop: SIGTERM, wait (bounded) and return the exit status (0 for a clean stop; 128+N
-- when signal N ended it). One that does not stop in time is killed and that is an error.
function App:stop(timeout)
  if self.gone then return self.status end
  timeout = timeout or self.stop_timeout
  self:signal("TERM")
  local st = wait_exit(self, timeout)
  if not st then
    stop_quietly(self, 0)
    error(("scgi.test: scgi-lua (pid %d) did not stop within %g s of SIGTERM; killed%s"):format(
      self.pid, timeout, self:log_tail()), 2)
  end
  forget(self)
  return st
end

App.__gc = function(self) stop_quietly(self) end
-- `local app <close> = T.start(...)`: a graceful stop at the end of the scope; a quiet one when
-- the scope ends by an error, so that error is the one reported.
App.__close = function(self, err)
  if err ~= nil then stop_quietly(self) else self:stop() end
end
App.__tostring = function(self) return ("scgi.test app %s (pid %s)"):format(self.app, self.pid) end

-- Waits (bounded, default 5 s) until the log holds `text` (plain), and returns the log; the log
-- is written by a thread of its own, so a line may come a little after the answer.
function App:wait_log(text, timeout)
  local deadline = socket.gettime() + (timeout or 5)
  repeat
    local log = self:log()
    if log:find(text, 1, true) then return log end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  error(("scgi.test: the log did not show %q within %g s%s"):format(text, timeout or 5, self:log_tail()), 2)
end

-- nginx's $document_uri: the path decoded (%XX), slashes merged, "." and ".." resolved; nil
-- when ".." climbs over the root (nginx answers 400 itself).
local function document_uri(path)
  path = path:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  local out = {}
  local trailing = path:match("/%.?%.?$") and true
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #out == 0 then return nil end
      out[#out] = nil
    elseif seg ~= "." then
      out[#out + 1] = seg
    end
  end
  local s = "/" .. table.concat(out, "/")
  if trailing and s ~= "/" then s = s .. "/" end
  return s
end

-- The request's header lines as a list of {name, value}: a list of pairs keeps its order;
-- name = value (or a list of values: one line each) entries follow, sorted by name.
local function header_lines(headers)
  local lines = {}
  if headers == nil then return lines end
  if type(headers) ~= "table" then fail("headers must be a table") end
  for _, pair in ipairs(headers) do lines[#lines + 1] = { pair[1], pair[2] } end
  local names = {}
  for k in pairs(headers) do
    if type(k) == "string" then names[#names + 1] = k end
  end
  table.sort(names, function(a, b) return a:lower() < b:lower() end)
  for _, k in ipairs(names) do
    local v = headers[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do lines[#lines + 1] = { k, item } end
    else
      lines[#lines + 1] = { k, v }
    end
  end
  for _, l in ipairs(lines) do
    local name, value = l[1], l[2]
    if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      fail("bad header name " .. tostring(name))
    end
    if name:find("_", 1, true) then
      fail(("header %s: nginx drops header names with '_' (underscores_in_headers off)"):format(name))
    end
    if type(value) == "number" then value = tostring(value) end
    if type(value) ~= "string" or value:find("[\r\n%z]") then
      fail(("header %s: the value must be a string without CR, LF or NUL"):format(name))
    end
    l[2] = value:match("^%s*(.-)%s*$")
  end
  return lines
end

local function find_header(lines, name)
  for _, l in ipairs(lines) do
    if l[1]:lower() == name then return l[2] end
  end
end

local AUTO = {} -- a variable whose value follows from others unless it is given

-- The SCGI variables of a request, in nginx's order: CONTENT_LENGTH, Debian's scgi_params in the
-- file's order (HTTPS only when not empty), then one HTTP_* pair per header line, in order.
local function variables(app_params, req, body, lines, remote_port)
  local method = req.method or "GET"
  local uri = req.uri or "/"
  if type(uri) ~= "string" or uri:sub(1, 1) ~= "/" then
    fail("the uri must begin with /, got " .. tostring(uri))
  end
  local path, query = uri:match("^([^?]*)%??(.*)$")
  local doc = document_uri(path)
  if not doc then fail(uri .. " climbs over the root: nginx answers 400 itself") end
  local host = find_header(lines, "host")
  host = host and host:lower():gsub(":%d*$", ""):gsub("%.$", "") or nil
  local p = {
    { "CONTENT_LENGTH", tostring(#body) },
    { "REQUEST_METHOD", method },
    { "REQUEST_URI", uri },
    { "QUERY_STRING", query },
    { "CONTENT_TYPE", find_header(lines, "content-type") or "" },
    { "DOCUMENT_URI", doc },
    { "DOCUMENT_ROOT", "/var/www/html" },
    { "SCGI", "1" },
    { "SERVER_PROTOCOL", "HTTP/1.1" },
    { "REQUEST_SCHEME", "http" },
    { "HTTPS", AUTO },
    { "REMOTE_ADDR", "127.0.0.1" },
    { "REMOTE_PORT", tostring(remote_port) },
    { "SERVER_PORT", "80" },
    { "SERVER_NAME", "localhost" },
    { "HTTP_HOST", AUTO },
  }
  local index = {}
  for i, v in ipairs(p) do index[v[1]] = i end
  -- the app's and then the request's overrides: a value replaces, false removes, a new name
  -- goes after the others
  for _, over in ipairs({ app_params or {}, req.params or {} }) do
    local names = {}
    for k in pairs(over) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local v = over[k]
      if v ~= false then v = tostring(v) end
      if index[k] then
        p[index[k]][2] = v
      else
        p[#p + 1] = { k, v }
        index[k] = #p
      end
    end
  end
  local https = p[index.HTTPS]
  if https[2] == AUTO then https[2] = p[index.REQUEST_SCHEME][2] == "https" and "on" or false end
  local hh = p[index.HTTP_HOST]
  if hh[2] == AUTO then hh[2] = host or p[index.SERVER_NAME][2] or "" end -- nginx's $host
  local out = {}
  for _, v in ipairs(p) do
    if v[2] then out[#out + 1] = v end
  end
  -- nginx passes every header line as HTTP_*, except those a scgi_param of that name hides
  for _, l in ipairs(lines) do
    local name = "HTTP_" .. l[1]:upper():gsub("-", "_")
    if not index[name] then out[#out + 1] = { name, l[2] } end
  end
  return out
end

-- The SCGI bytes of a request: the netstring of NUL-terminated pairs, then the body.
local function encode(vars, body)
  local parts = {}
  for i, v in ipairs(vars) do parts[i] = v[1] .. "\0" .. v[2] .. "\0" end
  local block = table.concat(parts)
  return #block .. ":" .. block .. "," .. body
end

-- A CGI answer as nginx reads it: an optional "HTTP/1.x NNN" line, header lines (CRLF or LF),
-- a blank line, the body. Status gives the status; Location without one gives 302; else 200.
local function parse(raw)
  local s, e = raw:find("\r?\n\r?\n")
  if not s then return nil, "the answer has no end of headers (nginx answers 502)" end
  local top, body = raw:sub(1, s - 1), raw:sub(e + 1)
  local headers, status = {}, nil
  local first = true
  for line in (top .. "\n"):gmatch("(.-)\r?\n") do
    local code = first and line:match("^HTTP/%d%.%d (%d%d%d)")
    first = false
    if code then
      status = tonumber(code)
    else
      local k, v = line:match("^([^:%s]+)%s*:%s*(.-)%s*$")
      if not k then return nil, ("a header line nginx cannot parse (502): %q"):format(line) end
      k = k:lower()
      if k == "status" then
        local n = v:match("^(%d%d%d)")
        if not n then return nil, ("an invalid Status (nginx answers 502): %q"):format(v) end
        status = status or tonumber(n)
      elseif headers[k] == nil then
        headers[k] = v
      elseif type(headers[k]) == "table" then
        table.insert(headers[k], v)
      else
        headers[k] = { headers[k], v }
      end
    end
  end
  if not status then status = headers.location and 302 or 200 end
  return { status = status, headers = headers, body = body, raw = raw }
end

-- The SCGI bytes of request req (App:request's table) and "METHOD URI" for messages.
local function build(req, app_params, remote_port)
  if type(req) ~= "table" then fail("a request is a table { method, uri, headers, body }") end
  local body = req.body
  if body ~= nil and type(body) ~= "string" then fail("the body must be a string") end
  local lines = header_lines(req.headers)
  if body ~= nil then -- a client sends the length of a body it sends
    local given = find_header(lines, "content-length")
    if given and given ~= tostring(#body) then
      fail(("Content-Length %s, but the body has %d bytes"):format(given, #body))
    end
    if not given then lines[#lines + 1] = { "Content-Length", tostring(#body) } end
  end
  local what = (req.method or "GET") .. " " .. tostring(req.uri or "/")
  return encode(variables(app_params, req, body or "", lines, remote_port), body or ""), what
end

-- Calls f(...); an internal argument error is raised again at level 3 (the public call's caller).
local function checked(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then error(type(r[2]) == "table" and r[2][1] or r[2], 3) end
  return table.unpack(r, 2, r.n)
end

-- The bytes App:request sends for req (its table), with params as T.start's option.
function T.encode(req, params) return (checked(build, req, params, 40000)) end

-- One request: { method = "GET", uri = "/", headers = {...}, body = "...", params = {...},
-- timeout = seconds }. Returns { status = number, headers = { name = value or list }, body,
-- raw }. Raises when the program gives no (or no valid) answer within the timeout.
function App:request(req)
  if self.gone then error("scgi.test: the app was stopped", 2) end
  local bytes, what = checked(build, req, self.params, self.next_port)
  self.next_port = self.next_port < 60999 and self.next_port + 1 or 32768
  local timeout = req.timeout or self.timeout
  if not self:running() then
    error(("scgi.test: %s: scgi-lua is not running (exit status %d)%s"):format(what, self.status,
      self:log_tail()), 2)
  end
  local c = assert((unix.stream or unix)())
  c:settimeout(timeout, "t")
  local ok, err = c:connect(self.socket)
  if not ok then
    c:close()
    error(("scgi.test: %s: cannot connect to %s: %s%s"):format(what, self.socket, err, self:log_tail()), 2)
  end
  c:settimeout(timeout, "t") -- the total from here: the whole exchange is bounded
  c:send(bytes) -- an answer may come before the whole body was taken (413): read it all the same
  local raw, rerr, partial = c:receive("*a")
  c:close()
  raw = raw or partial or ""
  if rerr == "timeout" then
    error(("scgi.test: %s: no complete answer within %g s (got %d bytes)%s"):format(what, timeout, #raw,
      self:log_tail()), 2)
  end
  if raw == "" then
    error(("scgi.test: %s: no answer: scgi-lua closed the connection without one (%s)%s"):format(what,
      rerr or "closed", self:log_tail()), 2)
  end
  local res, why = parse(raw)
  if not res then
    error(("scgi.test: %s: %s; the answer began %q%s"):format(what, why, raw:sub(1, 200), self:log_tail()), 2)
  end
  return res
end

-- GET uri (headers as for request).
function App:get(uri, headers) return self:request({ method = "GET", uri = uri, headers = headers }) end

-- POST body to uri (headers as for request; Content-Type is not guessed).
function App:post(uri, body, headers)
  return self:request({ method = "POST", uri = uri, body = body or "", headers = headers })
end

-- A private directory (mode 0700) under $TMPDIR or /tmp.
local function private_dir()
  local p = io.popen("mktemp -d \"${TMPDIR:-/tmp}/scgi-test.XXXXXXXX\" 2>&1")
  local dir = p:read("l")
  p:close()
  if not dir or dir:sub(1, 1) ~= "/" then error("scgi.test: mktemp -d failed: " .. tostring(dir), 3) end
  return dir
end

local known = { program = true, workers = true, args = true, env = true, supervisor = true, params = true,
  start_timeout = true, timeout = true, stop_timeout = true }

-- Starts scgi-lua on app_path. options: program (default $SCGI_LUA, else scgi-lua on PATH),
-- workers (default 1), args (a list, one command-line argument an item), env (NAME = value, or
-- false to unset), supervisor (default false: --no-master), params (SCGI variables for every
-- request), start_timeout, timeout, stop_timeout. Returns the app; raises with the program's own
-- message when it does not start.
function T.start(app_path, options)
  if type(app_path) ~= "string" then error("scgi.test: start takes the app file's path", 2) end
  options = options or {}
  if type(options) ~= "table" then error("scgi.test: options must be a table", 2) end
  for k in pairs(options) do
    if not known[k] then error("scgi.test: unknown option " .. tostring(k), 2) end
  end
  local program = options.program or os.getenv("SCGI_LUA") or "scgi-lua"
  local dir = private_dir()
  local sock = dir .. "/scgi.sock"
  local args = { q(program), q(app_path), "--socket", q(sock), "--workers", q(options.workers or 1) }
  local extra = options.args or {}
  local supervised = options.supervisor
  for _, a in ipairs(extra) do
    args[#args + 1] = q(a)
    if a == "--processes" or tostring(a):match("^%-%-processes=") then supervised = true end
  end
  if not supervised then args[#args + 1] = "--no-master" end
  local env = {}
  local names = {}
  for k in pairs(options.env or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = options.env[k]
    if not tostring(k):match("^[%a_][%w_]*$") then error("scgi.test: bad environment name " .. tostring(k), 2) end
    env[#env + 1] = v == false and ("-u " .. k) or q(k .. "=" .. tostring(v))
  end
  local cmd = (#env > 0 and ("env " .. table.concat(env, " ") .. " ") or "") .. table.concat(args, " ")
  -- the wrapper: runs the program with its output in dir/log, writes its pid, then its exit
  -- status. A watchdog sends the program SIGTERM (SIGKILL 45 s later) if the spec's process dies
  -- first; the wrapper ends the watchdog as soon as the program is reaped, so no signal can reach
  -- a pid used again, and removes the directory when nobody is left to.
  local d = q(dir)
  local script = table.concat({
    "exec </dev/null;",
    cmd .. " >>" .. d .. "/log 2>&1 & pid=$!;",
    "echo $pid >" .. d .. "/pid.tmp; mv " .. d .. "/pid.tmp " .. d .. "/pid;",
    "( while kill -0 \"$owner\" 2>/dev/null; do sleep 1; done; kill -TERM $pid; n=0;",
    "  while kill -0 $pid 2>/dev/null && [ $n -lt 45 ]; do sleep 1; n=$((n+1)); done;",
    "  kill -KILL $pid ) >/dev/null 2>&1 & wd=$!;",
    "wait $pid; st=$?; kill $wd 2>/dev/null;",
    "echo $st >" .. d .. "/status.tmp; mv " .. d .. "/status.tmp " .. d .. "/status;",
    "kill -0 \"$owner\" 2>/dev/null || rm -rf " .. d,
  }, " ")
  os.execute("owner=$PPID sh -c " .. q(script) .. " >/dev/null 2>&1 &")
  local self = setmetatable({
    app = app_path, program = program, dir = dir, socket = sock, params = options.params,
    timeout = options.timeout or T.timeout, stop_timeout = options.stop_timeout or T.stop_timeout,
    next_port = 40000,
  }, App)
  local deadline = socket.gettime() + 5
  repeat
    local s = read_file(dir .. "/pid")
    self.pid = s and tonumber(s:match("%d+"))
    if not self.pid then socket.sleep(0.01) end
  until self.pid or socket.gettime() > deadline
  if not self.pid then
    self.gone = true
    os.execute("rm -rf " .. q(dir))
    error("scgi.test: could not start a shell for " .. program, 2)
  end
  local start_timeout = options.start_timeout or T.start_timeout
  deadline = socket.gettime() + start_timeout
  while true do
    local log = read_file(dir .. "/log") or ""
    self.listen = log:match("listening on ([^\n]+) %(%d+ workers?[^)\n]*%)")
    if self.listen then return self end
    local st = exit_status(self)
    if st then
      forget(self) -- reads the log again: all of it is written now
      error(("scgi.test: %s %s did not start (exit status %d):\n%s"):format(program, app_path, st,
        self.saved_log ~= "" and self.saved_log or "(no output)"), 2)
    end
    if socket.gettime() > deadline then
      stop_quietly(self, 1)
      error(("scgi.test: %s %s did not listen within %g s:\n%s"):format(program, app_path, start_timeout,
        self.saved_log ~= "" and self.saved_log or "(no output)"), 2)
    end
    socket.sleep(0.02)
  end
end

return T
