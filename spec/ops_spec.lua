-- spec/ops_spec.lua: running scgi-lua in production: reloading (SIGHUP and --reload-on-change),
-- systemd socket activation, socket permissions and dropping privileges, the access and error
-- logs, the stats endpoint and --status, and the pid file. Everything is on loopback and bounded.
local H = require "helper"
local socket = require "socket"

local is_root = (function()
  local p = io.popen("id -u")
  local uid = p:read("l")
  p:close()
  return uid == "0"
end)()
local have = function(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end
local AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups --"

local function exists(path) return os.execute("test -e " .. H.quote(path)) == true end

local function plain_count(text, what)
  local n, i = 0, 1
  while true do
    local s, e = text:find(what, i, true)
    if not s then return n end
    n, i = n + 1, e + 1
  end
end

local function lines_of(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function sh_out(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

-- Runs the program with the (already quoted) arguments, bounded to 10 s; returns code, stdout,
-- stderr. prefix goes before the program (env, setpriv).
local function run(args, prefix)
  local dir = H.tmpdir()
  local out, err = dir .. "/out", dir .. "/err"
  local rc = tonumber(sh_out(("%s timeout 10 %s %s >%s 2>%s </dev/null; echo $?"):format(prefix or "",
    H.quote(H.program), args, H.quote(out), H.quote(err))):match("%d+"))
  return rc, H.read_file(out) or "", H.read_file(err) or ""
end

-- Starts scgi-lua (H.start's options) when its readiness does not show as a "listening on" line
-- in its output; ready(proc) tells when it serves.
local function start_quiet(app, opts, ready)
  opts.expect_fail = true
  local proc = H.start(app, opts)
  proc.dir = opts.dir or proc.dir
  H.wait_for(function()
    if not proc.alive() then error("scgi-lua exited early:\n" .. proc.output(), 3) end
    return ready(proc)
  end, 10, "scgi-lua to serve")
  function proc.stop()
    proc.kill("TERM")
    return proc.wait(40)
  end
  return proc
end

local function can_connect(addr)
  local s = H.connect(addr, 1)
  if s then s:close() end
  return s ~= nil
end

-- One SCGI request; returns status, body, the raw answer and the number of bytes sent.
local function scgi_get(addr, uri, method, body)
  local head, b = H.encode(H.nginx_headers(method or "GET", uri), body)
  local raw = H.raw(addr, head .. b, 10)
  local status, _, got = H.parse(raw)
  return status, got, raw, #head + #b
end

-- A minimal JSON decoder (objects, arrays, strings, numbers, true, false, null).
local function json_decode(s)
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
  function value()
    ws()
    local c = char()
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if char() == "}" then
        pos = pos + 1
        return t
      end
      while true do
        ws()
        local k = str()
        expect(":")
        t[k] = value()
        ws()
        local d = char()
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then error("JSON: , or } expected at " .. pos - 1) end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if char() == "]" then
        pos = pos + 1
        return t
      end
      while true do
        t[#t + 1] = value()
        ws()
        local d = char()
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then error("JSON: , or ] expected at " .. pos - 1) end
      end
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

-- Many concurrent HTTP/1.0 GETs to 127.0.0.1:port, one connection each, kept at `conc` in flight
-- by step(); every answer (status and body) or failure is recorded.
local function http_load(port, path, conc)
  local L = { answers = {}, failures = {}, active = {} }
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
    local body = raw:match("\r\n\r\n(.*)$")
    if err or status ~= 200 then
      L.failures[#L.failures + 1] = ("%s: %s"):format(err or ("status " .. tostring(status)), raw:sub(1, 200))
    else
      L.answers[#L.answers + 1] = body
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
  function L.drain()
    L.stopping = true
    local deadline = H.now() + 20
    while #L.active > 0 and H.now() < deadline do L.step(0.05) end
    assert(#L.active == 0, "requests still unanswered after 20 s")
  end
  return L
end

-- An app that answers its version, with a finalizer that says when its state is closed; /slow
-- answers after a second.
local function version_app(version)
  return ([[
local version = %q
OPS_MARKER = setmetatable({}, { __gc = function()
  io.stderr:write("CLOSED " .. version .. "\n") -- one write: two workers may close at once
  io.stderr:flush()
end })
return function(headers, client)
  if headers.REQUEST_URI == "/slow" then require("scgi").sleep(1) end
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", version, "\n")
end
]]):format(version)
end

describe("reloading", function()
  after_each(H.cleanup)

  it("under load through nginx: ten SIGHUPs, no failed request, the answers move on", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, version_app("v0"))
    local srv = H.start(app, { dir = dir, workers = 2 })
    local ng = H.nginx(srv.addr)
    local inode = sh_out("stat -c %i " .. H.quote(srv.addr))
    local fds = H.fd_count(srv.pid)
    local wrk
    if have("wrk") then
      wrk = H.spawn(("exec wrk -t2 -c16 -d4s http://127.0.0.1:%d/"):format(ng.port), dir, "wrk")
    end
    local load = http_load(ng.port, "/", 12)
    load.run_for(0.5)
    for i = 1, 10 do
      H.write_file(app, version_app("v" .. i))
      srv.kill("HUP")
      load.run_for(0.2)
    end
    load.run_for(0.5)
    load.drain()
    if wrk then
      assert.equal(0, wrk.wait(15))
      local out = wrk.output()
      assert.truthy(out:match("(%d+) requests in"), out)
      assert.is_nil(out:find("Socket errors", 1, true), out)
      assert.is_nil(out:find("Non-2xx", 1, true), out)
    end
    assert.same({}, load.failures)
    assert.is_true(#load.answers > 100, "only " .. #load.answers .. " answers")
    local seen, distinct = {}, 0
    for _, body in ipairs(load.answers) do
      local v = body:match("^v(%d+)\n$")
      assert.truthy(v, "unexpected answer " .. body)
      if not seen[v] then distinct = distinct + 1 end
      seen[v] = true
    end
    assert.is_true(distinct >= 3, "the answers went through " .. distinct .. " versions only")
    for _ = 1, 20 do
      local status, _, body = H.http(ng.port, "GET", "/")
      assert.equal(200, status)
      assert.equal("v10\n", body)
    end
    -- every worker reloaded ten times, and each replaced state was closed
    local out = srv.output()
    assert.equal(10, plain_count(out, "reloading " .. app))
    assert.equal(10, plain_count(out, "worker 0: reloaded " .. app))
    assert.equal(10, plain_count(out, "worker 1: reloaded " .. app))
    H.wait_for(function() return plain_count(srv.output(), "CLOSED v") == 20 end, 5,
      "the 20 replaced states to be closed")
    for i = 0, 9 do assert.equal(2, plain_count(srv.output(), "CLOSED v" .. i .. "\n")) end
    assert.equal(0, plain_count(srv.output(), "CLOSED v10\n"))
    -- the listening socket is the same one, and nothing leaked
    assert.equal(inode, sh_out("stat -c %i " .. H.quote(srv.addr)))
    H.wait_for(function() return H.fd_count(srv.pid) == fds end, 5, "the descriptors to go back to " .. fds)
    assert.is_nil(ng.error_log():find("[error]", 1, true), ng.error_log())
    ng.stop()
    assert.equal(0, srv.stop())
  end)

  it("a request in flight finishes on the old state; the next one gets the new app", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, version_app("old"))
    local srv = H.start(app, { dir = dir })
    local s = assert(H.connect(srv.addr, 10))
    assert(s:send((H.encode(H.nginx_headers("GET", "/slow")))))
    H.sleep(0.2) -- the handler sleeps now
    H.write_file(app, version_app("new"))
    srv.kill("HUP")
    H.wait_for(function() return srv.output():find("worker 0: reloaded", 1, true) end, 5, "the reload")
    local status, body = scgi_get(srv.addr, "/")
    assert.equal(200, status)
    assert.equal("new\n", body)
    assert.is_nil(srv.output():find("CLOSED old", 1, true), "the old state was closed under its request")
    local raw = s:receive("*a")
    s:close()
    local st, _, slow_body = H.parse(raw)
    assert.equal(200, st)
    assert.equal("old\n", slow_body)
    -- the old state goes with its last request
    H.wait_for(function() return srv.output():find("CLOSED old\n", 1, true) end, 5, "the old state to close")
    assert.equal(0, srv.stop())
  end)

  it("an app that fails to load on reload changes nothing; the failure is logged with file and line", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, version_app("good"))
    local srv = H.start(app, { dir = dir, workers = 2 })
    local broken = {
      { "local version = 'x'\nreturn function(headers, client)\n  local x = = 1\nend\n", app .. ":3:" },
      { "local x = 1\nerror('load-time failure')\n", app .. ":2: load-time failure" },
      { "return 42\n", "must return the handler function, but it returned number" },
    }
    for i, case in ipairs(broken) do
      H.write_file(app, case[1])
      srv.kill("HUP")
      H.wait_for(function() return plain_count(srv.output(), "reload failed") == 2 * i end, 5,
        "both workers to report the failed reload")
      local out = srv.output()
      for w = 0, 1 do
        local prefix = ("scgi-lua: worker %d: reload failed, the running app goes on serving: "):format(w)
        local found = false
        for _, l in ipairs(lines_of(out)) do
          -- each failure names the file (and, for Lua errors, the line)
          found = found or (l:find(prefix, 1, true) == 1 and l:find(app, 1, true) and l:find(case[2], 1, true)) ~= nil
        end
        assert.is_true(found, "worker " .. w .. " did not log the failure with " .. case[2] .. ":\n" .. out)
      end
      for _ = 1, 6 do
        local status, body = scgi_get(srv.addr, "/")
        assert.equal(200, status)
        assert.equal("good\n", body)
      end
    end
    assert.is_nil(srv.output():find("CLOSED good", 1, true))
    -- fixed: the next reload takes it
    H.write_file(app, version_app("fixed"))
    srv.kill("HUP")
    H.wait_for(function() return plain_count(srv.output(), ": reloaded " .. app) == 2 end, 5, "the reload")
    for _ = 1, 6 do assert.equal("fixed\n", select(2, scgi_get(srv.addr, "/"))) end
    assert.is_true(srv.alive())
    assert.equal(0, srv.stop())
  end)

  it("--reload-on-change picks up an edit of the app file and of a module it requires", function()
    local dir = H.tmpdir()
    local app, mod = dir .. "/app.lua", dir .. "/ops_watched_mod.lua"
    local function write_app(v)
      H.write_file(app, ([[
local mod = require "ops_watched_mod"
return function(_, client)
  client:write("Status: 200 OK\r\n\r\n", %q, "+", mod.version)
end
]]):format(v))
    end
    write_app("a1")
    H.write_file(mod, 'return { version = "m1" }\n')
    local srv = H.start(app, { dir = dir, workers = 2, args = { "--reload-on-change" } })
    local function answers(want)
      for _ = 1, 4 do
        if select(2, scgi_get(srv.addr, "/")) ~= want then return false end
      end
      return true
    end
    assert.equal("a1+m1", select(2, scgi_get(srv.addr, "/")))
    H.sleep(0.05)
    local t0 = H.now()
    write_app("a2")
    H.wait_for(function() return answers("a2+m1") end, 3, "the edited app to be served")
    local took = H.now() - t0
    assert.truthy(srv.output():find(app .. " changed", 1, true), srv.output())
    H.sleep(0.05)
    t0 = H.now()
    H.write_file(mod, 'return { version = "m2" }\n')
    H.wait_for(function() return answers("a2+m2") end, 3, "the edited module to be served")
    assert.truthy(srv.output():find(mod .. " changed", 1, true), srv.output())
    assert.is_true(took < 3 and H.now() - t0 < 3)
    -- a broken edit is logged and changes nothing; the repaired file is taken
    H.write_file(app, "return function(\n")
    H.wait_for(function() return srv.output():find("reload failed", 1, true) end, 3, "the failed reload")
    assert.truthy(srv.output():find(app .. ":2:", 1, true), srv.output())
    assert.is_true(answers("a2+m2"))
    write_app("a3")
    H.wait_for(function() return answers("a3+m2") end, 3, "the repaired app to be served")
    -- a file the app does not use changes nothing
    local before = plain_count(srv.output(), "reloading ")
    H.write_file(dir .. "/unrelated.lua", "return 1\n")
    H.sleep(1.5)
    assert.equal(before, plain_count(srv.output(), "reloading "))
    assert.equal(0, srv.stop())
  end)
end)

describe("systemd socket activation", function()
  local spawned = {}
  after_each(function()
    for _, p in ipairs(spawned) do
      if p.alive() then
        p.kill("KILL")
        pcall(p.wait, 5)
      end
    end
    spawned = {}
    H.cleanup()
  end)

  -- Makes a listening socket (unix at `where`, or TCP on 127.0.0.1:0), puts it on fd 3, names
  -- itself in LISTEN_PID (plus pid_delta) with LISTEN_FDS=1 and execs the rest of its arguments,
  -- as systemd does for a .socket unit.
  local launcher = [[
import os, socket, sys
kind, where, pid_delta, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
if kind == "unix":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(where)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
s.listen(64)
if s.fileno() == 3:
    os.set_inheritable(3, True)
    s.detach()
else:
    os.dup2(s.fileno(), 3)
    s.close()
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid() + pid_delta)
os.environ["LISTEN_FDNAMES"] = "scgi"
os.execv(argv[0], argv)
]]

  local function launch(kind, where, args, pid_delta)
    local dir = H.tmpdir()
    H.write_file(dir .. "/launch.py", launcher)
    local cmd = ("exec python3 %s %s %s %d %s %s --workers 2 %s"):format(H.quote(dir .. "/launch.py"), kind,
      H.quote(where or "-"), pid_delta or 0, H.quote(H.program), H.quote(H.apps .. "/ops_app.lua"), args or "")
    local p = H.spawn(cmd, dir, "scgi")
    spawned[#spawned + 1] = p
    return p
  end

  local function listening(p)
    return H.wait_for(function()
      if not p.alive() then error("scgi-lua exited early:\n" .. p.output(), 3) end
      return p.output():match("listening on ([^\n]+) %(%d+ workers?%)")
    end, 10, "scgi-lua to listen")
  end

  it("takes a unix socket on fd 3 when LISTEN_PID and LISTEN_FDS name the process", function()
    local dir = H.tmpdir()
    local path = dir .. "/activated.sock"
    local p = launch("unix", path)
    assert.equal("fd:3 (unix:" .. path .. ")", listening(p))
    for _ = 1, 5 do assert.equal("ok\n", select(2, scgi_get(path, "/ok"))) end
    -- the variables are not passed on to the app (its children would take them for theirs)
    for _, name in ipairs({ "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES" }) do
      assert.equal("(nil)\n", select(2, scgi_get(path, "/env?name=" .. name)))
    end
    p.kill("TERM")
    assert.equal(0, p.wait(10))
    -- the socket belongs to systemd: scgi-lua leaves the file alone
    assert.is_true(exists(path))
  end)

  it("takes a TCP socket on fd 3 with --socket systemd", function()
    local p = launch("tcp", nil, "--socket systemd")
    local addr = listening(p):match("^fd:3 %((127%.0%.0%.1:%d+)%)$")
    assert.truthy(addr, p.output())
    for _ = 1, 5 do
      local status, body = scgi_get(addr, "/ok")
      assert.equal(200, status)
      assert.equal("ok\n", body)
    end
    assert.equal(404, (scgi_get(addr, "/nope")))
    p.kill("TERM")
    assert.equal(0, p.wait(10))
  end)

  it("--socket systemd without a passed socket exits 1 with a clear message", function()
    local rc, out, err = run(H.quote(H.apps .. "/ops_app.lua") .. " --socket systemd",
      "env -u LISTEN_PID -u LISTEN_FDS")
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("--socket systemd: no socket was passed", 1, true), err)
    assert.truthy(err:find("LISTEN_PID", 1, true), err)
    assert.is_nil(err:find("listening on", 1, true))
  end)

  it("ignores LISTEN_PID naming another process", function()
    local dir = H.tmpdir()
    local p = launch("unix", dir .. "/other.sock", "--socket systemd", 1)
    assert.equal(1, p.wait(10))
    assert.truthy(p.output():find("--socket systemd: no socket was passed", 1, true), p.output())
  end)

  it("an explicit --socket PATH wins over a passed socket", function()
    local dir = H.tmpdir()
    local mine = dir .. "/mine.sock"
    local p = launch("unix", dir .. "/passed.sock", "--socket " .. H.quote(mine))
    assert.equal("unix:" .. mine, listening(p))
    assert.equal("ok\n", select(2, scgi_get(mine, "/ok")))
    p.kill("TERM")
    assert.equal(0, p.wait(10))
    assert.is_false(exists(mine))
  end)
end)

describe("socket permissions and privileges", function()
  after_each(H.cleanup)

  local function mode_of(path) return (sh_out("stat -c '%a %U:%G' " .. H.quote(path)):gsub("\n$", "")) end

  for _, mode in ipairs({ "0660", "0666", "0600" }) do
    it("--socket-mode " .. mode .. " sets the socket's mode exactly (not through the umask)", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-mode"] = mode } })
      assert.equal(mode:sub(2), mode_of(srv.addr):match("^%d+"))
      assert.equal(200, (scgi_get(srv.addr, "/ok")))
      assert.equal(0, srv.stop())
    end)
  end

  it("--socket-owner on a TCP socket or for an unknown user exits 1", function()
    local app = H.quote(H.apps .. "/ops_app.lua")
    local rc, _, err = run(app .. " --socket 127.0.0.1:0 --socket-owner nobody")
    assert.equal(1, rc)
    assert.truthy(err:find("--socket-owner applies to a unix socket path only", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --socket-owner no-such-user-x")
    assert.equal(1, rc)
    assert.truthy(err:find("no such user: no-such-user-x", 1, true), err)
    assert.is_false(exists(dir .. "/s.sock"))
    rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --user no-such-user-x")
    assert.equal(1, rc)
    assert.truthy(err:find("no such user: no-such-user-x", 1, true), err)
    assert.is_false(exists(dir .. "/s.sock"))
  end)

  describe("as root", function()
    if not is_root then
      pending("these run as root only (CI runs the specs as root)")
      return
    end

    it("--socket-owner nobody:nogroup gives the socket to nobody:nogroup", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-owner"] = "nobody:nogroup", ["socket-mode"] = "0660" } })
      assert.equal("660 nobody:nogroup", mode_of(srv.addr))
      assert.equal(200, (scgi_get(srv.addr, "/ok")))
      assert.equal(0, srv.stop())
    end)

    it("--socket-owner nobody keeps the group", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-owner"] = "nobody" } })
      assert.equal("nobody:root", mode_of(srv.addr):match("%S+$"))
      assert.equal(0, srv.stop())
    end)

    -- The Uid/Gid lines of every thread of the process: all four ids of each.
    local function ids_of(pid)
      local out = {}
      for task in sh_out("ls /proc/" .. pid .. "/task"):gmatch("%d+") do
        local st = H.read_file("/proc/" .. pid .. "/task/" .. task .. "/status") or ""
        out[#out + 1] = { uid = st:match("Uid:%s*([^\n]*)"), gid = st:match("Gid:%s*([^\n]*)"),
          groups = st:match("Groups:([^\n]*)") }
      end
      return out
    end

    it("--user nobody --group nogroup: the socket is bound as root, the app loads as nobody", function()
      local dir = H.tmpdir()
      os.execute("mkdir -m 700 " .. H.quote(dir .. "/private"))
      local sock = dir .. "/private/app.sock" -- only root can create it: bound before the drop
      local srv = H.start("ops_app.lua", { socket = sock, workers = 2, env = "OPS_SHOW_UID=1",
        options = { user = "nobody", group = "nogroup" } })
      local out = srv.output()
      local drop = out:find("running as uid 65534, gid 65534", 1, true)
      -- (the two lines come from two threads: their order in the output says nothing)
      local load = out:find("OPS LOAD Uid:\t65534\t65534\t65534\t65534 Gid:\t65534\t65534\t65534\t65534", 1, true)
      assert.truthy(drop, out)
      assert.truthy(load, out)
      local threads = ids_of(srv.pid)
      assert.is_true(#threads >= 4) -- main, log thread, two workers
      for _, t in ipairs(threads) do
        assert.equal("65534\t65534\t65534\t65534", t.uid)
        assert.equal("65534\t65534\t65534\t65534", t.gid)
        assert.equal("", (t.groups:gsub("%s", "")))
      end
      local status, body = scgi_get(sock, "/uid")
      assert.equal(200, status)
      assert.equal("Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n", body)
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
    end)

    it("--user nobody alone takes nobody's group", function()
      local srv = H.start("ops_app.lua", { options = { user = "nobody" } })
      assert.truthy(srv.output():find("running as uid 65534, gid 65534", 1, true))
      local status, body = scgi_get(srv.addr, "/uid")
      assert.equal(200, status)
      assert.truthy(body:find("Gid:\t65534\t", 1, true), body)
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
    end)

    -- The socket and the pid file are created as root before the drop; when the dropped user
    -- cannot write their directory they stay behind, and the log says which and why.
    it("with --user, the socket and pid file it cannot remove are named in a warning", function()
      local dir = H.tmpdir()
      local srv = H.start("ops_app.lua", { dir = dir, options = { user = "nobody", ["pid-file"] = dir .. "/app.pid" } })
      assert.equal(srv.pid .. "\n", H.read_file(dir .. "/app.pid"))
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
      for _, f in ipairs({ srv.addr, dir .. "/app.pid" }) do
        if exists(f) then
          assert.truthy(srv.output():find("cannot remove " .. f .. ": Permission denied", 1, true), srv.output())
          assert.truthy(srv.output():find("uid 65534", 1, true), srv.output())
        end
      end
    end)

    describe("when not root (under setpriv as nobody)", function()
      if not have("setpriv") then
        pending("setpriv is not installed")
        return
      end
      local app = H.quote(H.apps .. "/ops_app.lua")

      local function nobody_dir()
        local dir = H.tmpdir()
        os.execute("chown nobody:nogroup " .. H.quote(dir))
        return dir
      end

      it("--user root exits 1 naming the user and the fix", function()
        local dir = nobody_dir()
        local rc, out, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --user root", AS_NOBODY)
        assert.equal(1, rc)
        assert.equal("", out)
        assert.truthy(err:find("cannot switch to user root", 1, true), err)
        assert.truthy(err:find("runs as uid 65534, not root", 1, true), err)
        assert.truthy(err:find("start it as root, or leave out --user and --group", 1, true), err)
        assert.is_nil(err:find("listening on", 1, true))
        assert.is_false(exists(dir .. "/s.sock"))
      end)

      it("--user with one's own user is no change", function()
        local dir = nobody_dir()
        local p = H.spawn(AS_NOBODY .. " " .. H.quote(H.program) .. " " .. app .. " --socket " ..
          H.quote(dir .. "/s.sock") .. " --user nobody --group nogroup", dir, "scgi")
        H.wait_for(function() return p.output():find("listening on", 1, true) or not p.alive() end, 10, "scgi-lua")
        assert.is_true(p.alive(), p.output())
        assert.equal(200, (scgi_get(dir .. "/s.sock", "/ok")))
        p.kill("TERM")
        assert.equal(0, p.wait(10))
        assert.is_false(exists(dir .. "/s.sock"))
      end)

      it("--socket-owner root exits 1 naming the socket, the uid and the fix", function()
        local dir = nobody_dir()
        local rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --socket-owner root", AS_NOBODY)
        assert.equal(1, rc)
        assert.truthy(err:find("cannot give " .. dir .. "/s.sock to root", 1, true), err)
        assert.truthy(err:find("running as uid 65534", 1, true), err)
        assert.is_false(exists(dir .. "/s.sock"))
      end)

      it("a socket in a directory the user cannot write: the message names the path and the user", function()
        local dir = H.tmpdir() -- root's, mode 755
        local rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock"), AS_NOBODY)
        assert.equal(1, rc)
        assert.truthy(err:find(dir .. "/s.sock", 1, true), err)
        assert.truthy(err:find("Permission denied", 1, true), err)
        assert.truthy(err:find("nobody", 1, true) or err:find("uid 65534", 1, true),
          "the message does not name the user: " .. err)
      end)
    end)
  end)
end)

-- TIME wWORKER #ID METHOD URI STATUS BYTES_SENT DURATION_MS
local ACCESS = "^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ) w(%d+) #(%d+) (%S+) (%S+) (%d+) (%d+) (%d+%.%d%d)$"
local function parse_access(text)
  local out = {}
  for _, l in ipairs(lines_of(text)) do
    local time, w, id, method, uri, status, bytes, ms = l:match(ACCESS)
    assert(time, "not an access log line: " .. l)
    out[#out + 1] = { time = time, worker = tonumber(w), id = tonumber(id), method = method, uri = uri,
      status = tonumber(status), bytes = tonumber(bytes), ms = tonumber(ms) }
  end
  return out
end

-- Lines of the server's own life, which belong to no request.
local LIFE = { "listening on ", "worker %d+: served ", "stats on ", "running as ", "reloading ",
  "worker %d+: reloaded " }
local function request_lines(text)
  local out = {}
  for _, l in ipairs(lines_of(text)) do
    local msg = l:match("scgi%-lua: (.*)$")
    local life = false
    for _, p in ipairs(LIFE) do life = life or msg and msg:find("^" .. p) ~= nil end
    if msg and not life then out[#out + 1] = msg end
  end
  return out
end

describe("logs", function()
  after_each(H.cleanup)

  it("--access-log: one line per request with worker, id, method, URI, status, bytes and duration", function()
    local dir = H.tmpdir()
    local log = dir .. "/access.log"
    local srv = H.start("ops_app.lua", { dir = dir, workers = 2,
      options = { ["access-log"] = log, ["max-body-size"] = "10" } })
    local raws = {}
    local function send(key, bytes)
      raws[key] = H.raw(srv.addr, bytes, 10)
      return H.parse(raws[key])
    end
    local function req(method, uri, body)
      local head, b = H.encode(H.nginx_headers(method, uri), body)
      return head .. b
    end
    local t0 = os.time()
    assert.equal(200, send("/ok", req("GET", "/ok")))
    assert.equal(404, send("/missing", req("GET", "/missing")))
    assert.equal(400, send("-", "nonsense\r\n\r\n"))
    assert.equal(413, send("/echo", req("POST", "/echo", ("x"):rep(11))))
    assert.equal(500, send("/error", req("GET", "/error")))
    assert.equal(200, send("/slow?ms=300", req("GET", "/slow?ms=300")))
    H.wait_for(function() return #lines_of(H.read_file(log) or "") == 6 end, 5, "six access log lines")
    local want = { ["/ok"] = { "GET", 200 }, ["/missing"] = { "GET", 404 }, ["-"] = { "-", 400 },
      ["/echo"] = { "POST", 413 }, ["/error"] = { "GET", 500 }, ["/slow?ms=300"] = { "GET", 200 } }
    local by_uri, ids = {}, {}
    for _, e in ipairs(parse_access(H.read_file(log))) do
      by_uri[e.uri] = e
      assert.truthy(want[e.uri], "unexpected line for " .. e.uri)
      assert.equal(want[e.uri][1], e.method)
      assert.equal(want[e.uri][2], e.status)
      assert.equal(#raws[e.uri], e.bytes)
      assert.is_true(e.worker == 0 or e.worker == 1)
      assert.is_nil(ids[e.id], "two lines with id " .. e.id)
      ids[e.id] = true
      -- UTC, as the Z says
      local y, mo, d, h, mi, sec = e.time:match("^(%d+)%-(%d+)%-(%d+)T(%d+):(%d+):(%d+)")
      local t = os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = sec, isdst = false })
      local utc_offset = os.time(os.date("!*t", t0)) - t0
      assert.is_true(math.abs(t - utc_offset - t0) <= 5, "time " .. e.time .. " is not now in UTC")
    end
    assert.is_true(by_uri["/slow?ms=300"].ms >= 300 and by_uri["/slow?ms=300"].ms < 3000)
    assert.is_true(by_uri["/ok"].ms < 1000)
    -- the error log lines of these requests carry the same ids
    local out = srv.output()
    assert.truthy(out:find(("#%d GET /error: handler error: "):format(by_uri["/error"].id), 1, true), out)
    assert.truthy(out:find(("#%d POST /echo: 413 Content Too Large: body of 11 bytes is over the limit of 10")
      :format(by_uri["/echo"].id), 1, true), out)
    assert.truthy(out:find(("#%d "):format(by_uri["-"].id) .. ".*400 Bad Request"), out)
    for _, msg in ipairs(request_lines(out)) do
      if not msg:find("^%s") and not msg:find("^%[C%]") then -- traceback lines of the handler error
        assert.truthy(msg:find("^#%d+ "), "an error log line without a request id: " .. msg)
      end
    end
    assert.equal(0, srv.stop())
  end)

  it("the error line of a malformed request names method and URI as - -", function()
    local srv = H.start("ops_app.lua")
    assert.equal(400, (H.parse(H.raw(srv.addr, "nonsense\r\n\r\n", 10))))
    H.wait_for(function() return srv.output():find("400 Bad Request", 1, true) end, 5, "the 400 line")
    assert.truthy(srv.output():find("scgi%-lua: #%d+ %- %-: 400 Bad Request: "), srv.output())
    assert.equal(0, srv.stop())
  end)

  it("a client that leaves while its handler waits is not logged as a handler that wrote nothing", function()
    local dir = H.tmpdir()
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["access-log"] = dir .. "/access.log" } })
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("GET", "/slow?ms=200"))))
    H.sleep(0.05)
    s:close()
    H.wait_for(function() return #lines_of(H.read_file(dir .. "/access.log") or "") == 1 end, 5, "the access line")
    assert.equal(200, (scgi_get(srv.addr, "/ok")))
    assert.equal(0, srv.stop())
    assert.is_nil(srv.output():find("the handler returned without writing a response", 1, true), srv.output())
  end)

  it("--access-log - writes to stdout; --log-file puts the error log in a file with ISO times", function()
    local dir = H.tmpdir()
    local errlog = dir .. "/error.log"
    local srv = start_quiet("ops_app.lua", { dir = dir, options = { ["access-log"] = "-", ["log-file"] = errlog } },
      function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
    local sock = dir .. "/scgi.sock"
    assert.equal(200, (scgi_get(sock, "/ok")))
    assert.equal(500, (scgi_get(sock, "/error")))
    H.wait_for(function() return #lines_of(srv.output()) == 2 end, 5, "two access lines on stdout")
    local e = parse_access(srv.output())
    assert.equal("/ok", e[1].uri)
    assert.equal("/error", e[2].uri)
    assert.equal(0, srv.stop())
    local lines = lines_of(H.read_file(errlog))
    assert.is_true(#lines >= 3, H.read_file(errlog))
    for _, l in ipairs(lines) do
      -- the handler error's traceback goes on in the lines after its own
      if not l:find("^%s") and not l:find("^stack traceback:") and not l:find("^%[C%]") then
        assert.truthy(l:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ scgi%-lua: "), "line: " .. l)
      end
    end
    local text = H.read_file(errlog)
    assert.truthy(text:find("Z scgi%-lua: listening on unix:" .. dir:gsub("%p", "%%%0") .. "/scgi%.sock"), text)
    assert.truthy(text:find(("Z scgi%%-lua: #%d GET /error: handler error: "):format(e[2].id)), text)
    assert.is_nil(srv.output():find("scgi-lua:", 1, true), "error log lines on stdout")
    -- SIGUSR1 with the access log on stdout: nothing to reopen, and nothing breaks
    srv = start_quiet("ops_app.lua", { options = { ["access-log"] = "-" } },
      function(p) return p.output():find("listening on", 1, true) end)
    srv.kill("USR1")
    H.sleep(0.2)
    assert.equal(200, (scgi_get(srv.dir .. "/scgi.sock", "/ok")))
    H.wait_for(function() return srv.output():find(" GET /ok 200 ", 1, true) end, 5, "the access line")
    assert.equal(0, srv.stop())
  end)

  local levels = {
    { "error", listening = false, warn = false },
    { "warn", listening = false, warn = true },
    { "info", listening = true, warn = true },
    { "debug", listening = true, warn = true },
  }
  for _, lv in ipairs(levels) do
    it("--log-level " .. lv[1] .. " filters the error log", function()
      local dir = H.tmpdir()
      local sock = dir .. "/scgi.sock"
      local srv = start_quiet("ops_app.lua", { dir = dir, options = { ["log-level"] = lv[1], timeout = "0.3" } },
        function() return can_connect(sock) end)
      assert.equal(200, (scgi_get(sock, "/ok")))
      local s = assert(H.connect(sock, 5)) -- says nothing: closed after --timeout with a warning
      local data, err, partial = s:receive("*a")
      s:close()
      assert.equal("", data or partial, tostring(err))
      assert.equal(500, (scgi_get(sock, "/error")))
      H.wait_for(function() return srv.output():find("handler error", 1, true) end, 5, "the handler error")
      assert.equal(0, srv.stop())
      local out = srv.output()
      assert.equal(lv.listening, out:find("listening on", 1, true) ~= nil, out)
      assert.equal(lv.listening, out:find("worker 0: served", 1, true) ~= nil, out)
      assert.equal(lv.warn, out:find("#%d+ %- %-: no progress for 0%.3 s while reading the header block; closing") ~= nil, out)
      assert.truthy(out:find("#%d+ GET /error: handler error: [^\n]*ops boom"), out)
    end)
  end

  it("bad log options: an unknown level exits 2, an unwritable log file exits 1", function()
    local app = H.quote(H.apps .. "/ops_app.lua")
    local rc, _, err = run(app .. " --log-level loud")
    assert.equal(2, rc)
    assert.truthy(err:find("invalid value for --log-level: 'loud' (expected error, warn, info or debug)", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --log-file /nonexistent-dir/x.log")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot open the log file /nonexistent-dir/x.log: No such file or directory", 1, true), err)
    rc, _, err = run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --access-log /nonexistent-dir/a.log")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot open the access log /nonexistent-dir/a.log", 1, true), err)
    assert.is_false(exists(dir .. "/s.sock"))
  end)

  it("SIGUSR1 reopens the access log and the error log after they were moved away", function()
    local dir = H.tmpdir()
    local access, errlog = dir .. "/access.log", dir .. "/error.log"
    local srv = start_quiet("ops_app.lua", { dir = dir, workers = 2, options = { ["access-log"] = access, ["log-file"] = errlog } },
      function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
    local sock = dir .. "/scgi.sock"
    local function count(path, what) return plain_count(H.read_file(path) or "", what) end
    for round = 1, 2 do
      for _ = 1, 3 do assert.equal(200, (scgi_get(sock, "/ok"))) end
      assert.equal(500, (scgi_get(sock, "/error")))
      H.wait_for(function() return #lines_of(H.read_file(access) or "") == 4 and count(errlog, "handler error") == 1 end,
        5, "the lines of round " .. round)
      assert(os.rename(access, access .. "." .. round))
      assert(os.rename(errlog, errlog .. "." .. round))
      srv.kill("USR1")
      H.wait_for(function() return exists(access) and exists(errlog) end, 5, "the logs to be reopened")
    end
    assert.equal(404, (scgi_get(sock, "/missing?not")))
    H.wait_for(function() return #lines_of(H.read_file(access) or "") == 1 end, 5, "a line in the new access log")
    for round = 1, 2 do
      local old = parse_access(H.read_file(access .. "." .. round))
      assert.equal(4, #old)
      assert.equal(1, count(errlog .. "." .. round, "handler error"))
    end
    assert.equal("/missing?not", parse_access(H.read_file(access))[1].uri)
    assert.equal(0, count(errlog, "handler error"))
    assert.equal(0, srv.stop())
    assert.truthy((H.read_file(errlog) or ""):find("worker 0: served", 1, true))
  end)
end)

describe("the stats endpoint", function()
  after_each(H.cleanup)

  local function stats_addr(srv)
    return H.wait_for(function() return srv.output():match("stats on ([^\n]+)") end, 5, "the stats line")
  end

  local function get_stats(addr, path)
    local s = assert(H.connect(addr, 5))
    s:send(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n"):format(path or "/"))
    local raw = s:receive("*a")
    s:close()
    local status = tonumber(raw:match("^HTTP/1%.%d (%d+)"))
    local ctype = raw:match("\r\n[Cc]ontent%-[Tt]ype: ([^\r]*)")
    return status, ctype, raw:match("\r\n\r\n(.*)$")
  end

  local function version()
    return sh_out(H.quote(H.program) .. " --version"):match("^scgi%-lua (%S+)")
  end

  it("counts requests, errors, connections and bytes exactly", function()
    local srv = H.start("ops_app.lua", { workers = 2, options = { stats = "127.0.0.1:0" } })
    local addr = stats_addr(srv)
    assert.truthy(addr:match("^127%.0%.0%.1:%d+$"), addr)
    local sent, received = 0, 0
    local function go(bytes, want)
      local raw = H.raw(srv.addr, bytes, 10)
      assert.equal(want, (H.parse(raw)))
      sent, received = sent + #bytes, received + #raw
    end
    local function req(uri)
      local head, b = H.encode(H.nginx_headers("GET", uri))
      return head .. b
    end
    for _ = 1, 36 do go(req("/ok"), 200) end
    go(req("/slow?ms=300"), 200)
    for _ = 1, 3 do go(req("/error"), 500) end
    go("nonsense\r\n\r\n", 400)
    go("12:CONTENT_LENGTH,", 400)
    local empty = assert(H.connect(srv.addr, 5)) -- a connection that carries no request
    empty:close()
    local st
    H.wait_for(function()
      local status, ctype, body = get_stats(addr)
      assert.equal(200, status)
      assert.equal("application/json", ctype)
      st = json_decode(body)
      return st.total.requests == 42 and st.total.connections == 43
    end, 5, "the figures of 42 requests on 43 connections")
    assert.equal(version(), st.version)
    assert.equal(srv.pid, st.pid)
    assert.is_true(type(st.uptime) == "number" and st.uptime > 0 and st.uptime < 60)
    local t = st.total
    assert.equal(42, t.requests)
    assert.equal(3, t.errors)
    assert.equal(43, t.connections)
    assert.equal(0, t.active_connections)
    assert.equal(0, t.active_requests)
    assert.equal(received, t.bytes_out)
    assert.equal(sent, t.bytes_in)
    assert.is_true(t.lua_memory > 0)
    local buckets, n = 0, 0
    for k, v in pairs(t.latency_ms) do
      buckets, n = buckets + 1, n + v
      assert.truthy(k == "inf" or tonumber(k), k)
    end
    assert.equal(14, buckets)
    assert.equal(42, n)
    -- the 300 ms request lies over the 200 ms bucket (the others may too on a busy machine)
    local slow = 0
    for k, v in pairs(t.latency_ms) do
      if k == "inf" or tonumber(k) > 200 then slow = slow + v end
    end
    assert.is_true(slow >= 1, "no request in the buckets over 200 ms")
    -- the workers add up to the total
    assert.equal(2, #st.workers)
    local sum = {}
    for i, w in ipairs(st.workers) do
      assert.equal(i - 1, w.id)
      for _, k in ipairs({ "requests", "errors", "active_connections", "active_requests", "connections", "bytes_in",
        "bytes_out", "lua_memory" }) do
        sum[k] = (sum[k] or 0) + w[k]
      end
    end
    for k, v in pairs(sum) do assert.equal(t[k], v, k) end
    -- anything but GET: 405
    local s = assert(H.connect(addr, 5))
    s:send("POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert.truthy(s:receive("*a"):match("^HTTP/1%.0 405 "))
    s:close()
    assert.equal(0, srv.stop())
  end)

  it("serves on a unix socket (mode 0600) and --status prints the table", function()
    local dir = H.tmpdir()
    local path = dir .. "/stats.sock"
    local srv = H.start("ops_app.lua", { dir = dir, workers = 3, options = { stats = path } })
    assert.equal("unix:" .. path, stats_addr(srv))
    assert.equal("600", (sh_out("stat -c %a " .. H.quote(path)):gsub("\n", "")))
    for _ = 1, 5 do scgi_get(srv.addr, "/ok") end
    scgi_get(srv.addr, "/error")
    H.wait_for(function() return json_decode(select(3, get_stats(path))).total.requests == 6 end, 5, "6 requests")
    for _, a in ipairs({ path, "unix:" .. path }) do
      local rc, out, err = run("--status " .. H.quote(a))
      assert.equal(0, rc, err)
      assert.equal("", err)
      local l = lines_of(out)
      assert.truthy(l[1]:find(("scgi-lua %s, pid %d, up "):format(version(), srv.pid), 1, true), out)
      assert.truthy(l[1]:find(", 3 workers$"), out)
      assert.truthy(l[2]:match("^worker%s+requests%s+errors%s+active%s+connections%s+bytes in%s+bytes out"), out)
      local reqs, errs = 0, 0
      for i = 0, 2 do
        local r, e = l[3 + i]:match("^" .. i .. "%s+(%d+)%s+(%d+)%s")
        assert.truthy(r, out)
        reqs, errs = reqs + r, errs + e
      end
      assert.equal(6, reqs)
      assert.equal(1, errs)
      assert.truthy(l[6]:match("^total%s+6%s+1%s+0%s+6%s"), out)
    end
    assert.equal(0, srv.stop())
    assert.is_false(exists(path))
  end)

  it("--status exits 1 with a message when nothing or something else answers", function()
    local port = H.free_port()
    local rc, out, err = run("--status 127.0.0.1:" .. port)
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("cannot reach the stats endpoint 127.0.0.1:" .. port .. ": Connection refused", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = run("--status " .. H.quote(dir .. "/none.sock"))
    assert.equal(1, rc)
    assert.truthy(err:find("cannot reach the stats endpoint " .. dir .. "/none.sock", 1, true), err)
    -- an SCGI socket is not a stats endpoint
    local srv = H.start("ops_app.lua", { dir = dir })
    rc, _, err = run("--status " .. H.quote(srv.addr))
    assert.equal(1, rc)
    assert.truthy(err:find("did not answer like a scgi-lua stats endpoint", 1, true), err)
    assert.equal(0, srv.stop())
  end)
end)

describe("--pid-file", function()
  after_each(H.cleanup)

  it("holds the process id while it listens and is removed on SIGTERM", function()
    local dir = H.tmpdir()
    local pidf = dir .. "/run/app.pid"
    os.execute("mkdir " .. H.quote(dir .. "/run"))
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["pid-file"] = pidf } })
    assert.equal(srv.pid .. "\n", H.read_file(pidf))
    srv.kill("TERM")
    assert.equal(0, srv.wait(10))
    assert.is_false(exists(pidf))
  end)

  it("is not written by a server that fails to start, and an unwritable path exits 1", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/broken.lua", "return 1\n")
    local rc = run(H.quote(dir .. "/broken.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --pid-file " .. H.quote(dir .. "/app.pid"))
    assert.equal(1, rc)
    assert.is_false(exists(dir .. "/app.pid"))
    local err
    rc, _, err = run(H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --pid-file /nonexistent-dir/app.pid")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot write the pid file /nonexistent-dir/app.pid", 1, true), err)
    assert.is_false(exists(dir .. "/s.sock"))
  end)
end)
