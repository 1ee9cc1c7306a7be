-- spec/failover_spec.lua: beyond one machine: two scgi-lua instances on two loopback TCP ports
-- behind one nginx upstream. Each is stopped (SIGTERM) and started again while requests flow, and
-- no request fails: nginx moves to the other instance, and in-flight requests finish.
local H = require "helper"
local socket = require "socket"

-- Concurrent HTTP/1.0 GETs to 127.0.0.1:port, one connection each, `conc` in flight, driven by
-- step(); each answer is recorded with the phase current when it completed.
local function http_load(port, path, conc)
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
  function L.count(name, phase)
    local n = 0
    for _, a in ipairs(L.answers) do
      if a.body == name .. "\n" and (phase == nil or a.phase == phase) then n = n + 1 end
    end
    return n
  end
  return L
end

-- A private nginx whose `upstream app` holds the given 127.0.0.1 ports (H.nginx puts its config
-- inside a location block, and an upstream block belongs to the http level).
local function nginx_upstream(ports)
  local dir = H.tmpdir()
  local port = H.free_port()
  local servers = {}
  for _, p in ipairs(ports) do
    servers[#servers + 1] = ("    server 127.0.0.1:%d max_fails=1 fail_timeout=1s;"):format(p)
  end
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
  upstream app {
%s
  }
  server {
    listen 127.0.0.1:%d;
    location / {
      include /etc/nginx/scgi_params;
      scgi_pass app;
      scgi_next_upstream error timeout http_503;
      scgi_connect_timeout 1s;
    }
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, table.concat(servers, "\n"), port)
  H.write_file(dir .. "/nginx.conf", conf)
  local proc = H.spawn("exec nginx -p " .. H.quote(dir) .. " -c " .. H.quote(dir .. "/nginx.conf") .. " -e " ..
    H.quote(dir .. "/error.log"), dir, "nginx")
  H.wait_for(function()
    if not proc.alive() then error("nginx exited early:\n" .. proc.output() .. (H.read_file(dir .. "/error.log") or ""), 3) end
    local s = socket.tcp()
    s:settimeout(0.2)
    local ok = s:connect("127.0.0.1", port)
    s:close()
    return ok
  end, 10, "nginx to listen")
  proc.port = port
  function proc.error_log() return H.read_file(dir .. "/error.log") or "" end
  return proc
end

describe("two instances behind one nginx upstream", function()
  local ng
  after_each(function()
    if ng and ng.alive() then
      ng.kill("QUIT")
      if not pcall(ng.wait, 10) then ng.kill("KILL") end
    end
    ng = nil
    H.cleanup()
  end)

  it("stopping and restarting either instance while requests flow fails no request", function()
    local p1, p2 = H.free_port(), H.free_port()
    local function start(name, port)
      return H.start("ops_instance.lua", { socket = "127.0.0.1:" .. port, workers = 2, env = "OPS_INSTANCE=" .. name })
    end
    local a, b = start("a", p1), start("b", p2)
    ng = nginx_upstream({ p1, p2 })
    local load = http_load(ng.port, "/?ms=20", 6)

    -- 1: both serve
    load.run_for(1)
    -- 2: a stops (its requests in flight finish); b takes everything
    load.phase = 2
    a.kill("TERM")
    load.run_until(function() return not a.alive() end, 10, "a to exit")
    assert.equal(0, a.wait(1))
    load.run_for(1.2) -- longer than fail_timeout: nginx tries a again, and is refused again
    -- 3: a is back on the same port, and nginx uses it again
    load.phase = 3
    local a2 = start("a", p1)
    load.run_until(function() return load.count("a", 3) >= 5 end, 10, "the restarted a to serve")
    -- 4: b stops; a takes everything
    load.phase = 4
    b.kill("TERM")
    load.run_until(function() return not b.alive() end, 10, "b to exit")
    assert.equal(0, b.wait(1))
    load.phase = 5
    load.run_for(1.2)
    load.drain()

    assert.same({}, load.failures)
    assert.is_true(load.count("a", 1) > 0 and load.count("b", 1) > 0, "phase 1 did not use both instances")
    assert.is_true(load.count("b", 2) > 0)
    assert.is_true(load.count("a", 5) > 0)
    assert.equal(0, load.count("b", 5))
    assert.is_true(#load.answers > 50, #load.answers .. " answers only")
    -- nginx did see the stopped instances refuse connections
    assert.truthy(ng.error_log():find("Connection refused", 1, true), ng.error_log())
    assert.equal(0, a2.stop())
  end)

  it("an instance killed outright (SIGKILL) with requests in flight: nginx retries them on the other", function()
    local p1, p2 = H.free_port(), H.free_port()
    local function start(name, port)
      return H.start("ops_instance.lua", { socket = "127.0.0.1:" .. port, workers = 2, env = "OPS_INSTANCE=" .. name })
    end
    local a, b = start("a", p1), start("b", p2)
    ng = nginx_upstream({ p1, p2 })
    local load = http_load(ng.port, "/?ms=200", 8) -- long requests: some are always in flight
    load.run_until(function() return load.count("a") >= 3 and load.count("b") >= 3 end, 10, "both to serve")
    load.phase = 2
    a.kill("KILL")
    load.run_until(function() return not a.alive() end, 10, "a to die")
    load.run_for(1.5)
    load.phase = 3
    local a2 = start("a", p1)
    load.run_until(function() return load.count("a", 3) >= 3 end, 10, "the restarted a to serve")
    load.drain()
    assert.same({}, load.failures)
    assert.is_true(load.count("b", 2) > 0)
    assert.equal(0, a2.stop())
    assert.equal(0, b.stop())
  end)
end)
