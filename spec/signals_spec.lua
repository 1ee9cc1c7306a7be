-- spec/signals_spec.lua: signals that reach the supervisor and its serving processes both (a
-- signal to the whole process group: Ctrl-C in a terminal, kill -- -PGID, systemd's
-- KillMode=control-group) or reach a serving process while it starts.
local H = require "helper"

-- Starts the crash app's supervisor as the leader of a process group of its own.
local function start_group(extra)
  local dir = H.tmpdir()
  local sock = dir .. "/scgi.sock"
  local proc = H.spawn("exec setsid " .. H.quote(H.program) .. " " .. H.quote(H.apps .. "/crash.lua") ..
    " --socket " .. H.quote(sock) .. " --workers 1 " .. (extra or ""), dir, "scgi")
  proc.listen = H.listening(proc)
  proc.addr = sock
  return proc
end

local pid_of = H.pid_of

describe("signals to the whole process group", function()
  after_each(H.cleanup)

  for _, sig in ipairs({ "INT", "TERM" }) do
    it("SIG" .. sig .. " to the group drains: the request in flight gets its answer", function()
      local srv = start_group()
      local s = H.send_get(srv.addr, "/slow?s=1")
      H.sleep(0.3)
      os.execute("/bin/kill -" .. sig .. " -- -" .. srv.pid)
      local raw = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw)
      assert.equal(200, status, raw)
      assert.matches("^slow %d+\n$", body)
      assert.equal(0, srv.wait(10))
      assert.is_nil(srv.output():find("stopping now", 1, true), srv.output())
    end)
  end

  it("a second SIGINT to the group stops at once", function()
    local srv = start_group()
    local s = H.send_get(srv.addr, "/slow?s=20")
    H.sleep(0.3)
    os.execute("/bin/kill -INT -- -" .. srv.pid)
    H.sleep(0.5) -- past the 250 ms in which stop signals count as one
    local t0 = H.now()
    os.execute("/bin/kill -INT -- -" .. srv.pid)
    srv.wait(10)
    s:close()
    assert.is_true(H.now() - t0 < 5, "stopped after " .. (H.now() - t0) .. " s")
    assert.truthy(srv.output():find("stopping now", 1, true), srv.output())
  end)

  -- Stop signals within 250 ms of the first are one graceful stop: coreutils' timeout signals the
  -- program and then its group; make run's Ctrl-C reaches the group and its trap kills the program.
  local together = {
    { "SIGTERM to the supervisor, then to the group 50 ms later",
      "kill -TERM %d; sleep 0.05; /bin/kill -TERM -- -%d" },
    { "SIGINT to the group, then SIGTERM to the supervisor 20 ms later",
      "/bin/kill -INT -- -%d; sleep 0.02; kill -TERM %d" },
  }
  for _, case in ipairs(together) do
    it(case[1] .. ": one graceful stop, the request in flight finishes", function()
      local srv = start_group("--grace 5")
      local s = H.send_get(srv.addr, "/slow?s=1")
      H.sleep(0.3) -- in flight (had it not been accepted yet, the stop would still serve it)
      local t0 = H.now()
      os.execute(case[2]:format(srv.pid, srv.pid))
      local raw = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw)
      assert.equal(200, status, raw)
      assert.matches("^slow %d+\n$", body)
      assert.equal(0, srv.wait(10))
      assert.is_true(H.now() - t0 < 5, "stopped after " .. (H.now() - t0) .. " s")
      local out = srv.output()
      assert.is_nil(out:find("stopping now", 1, true), out)
      assert.truthy(out:find("after the first stop signal: the same graceful stop", 1, true), out)
    end)
  end

  it("SIGUSR2 to the group upgrades: the request in flight is answered, nothing dies", function()
    local srv = start_group()
    local first = pid_of(srv)
    local mark = #srv.output()
    local s = H.send_get(srv.addr, "/slow?s=1")
    H.sleep(0.3)
    os.execute("/bin/kill -USR2 -- -" .. srv.pid)
    local raw = s:receive("*a")
    s:close()
    assert.equal(200, (H.parse(raw)), raw)
    H.wait_for(function() return pid_of(srv) ~= first end, 10, "a new serving process")
    H.wait_log(srv, mark, "SIGUSR2 ignored") -- the old process's log line may come later
    local log = H.log_since(srv, mark)
    assert.is_nil(log:find("killed by signal", 1, true), log)
    srv.kill("TERM")
    assert.equal(0, srv.wait(10), srv.output())
  end)
end)

describe("a stop signal while a serving process starts", function()
  after_each(H.cleanup)

  it("is held until its handlers are set: it drains and the program exits 0", function()
    for _ = 1, 3 do
      local srv = H.start("crash.lua")
      local kid = pid_of(srv)
      -- the crash is replaced at once; the stop reaches the new process as it starts. The stop
      -- waits until the supervisor has reaped the crashed one (under ASan a crash takes a while
      -- to print its report, and a death while stopping is rightly a non-zero exit).
      os.execute("kill -SEGV " .. kid .. "; while kill -0 " .. kid ..
        " 2>/dev/null; do sleep 0.001; done; sleep 0.002; kill -TERM " .. srv.pid)
      assert.equal(0, srv.wait(10), srv.output())
      assert.is_nil(srv.output():find("killed by signal 15", 1, true), srv.output())
    end
  end)
end)

describe("SIGUSR2 with --no-master", function()
  after_each(H.cleanup)

  it("two SIGTERMs 50 ms apart are one graceful stop; one 0.5 s later stops at once", function()
    local srv = H.start("crash.lua", { args = { "--no-master", "--grace", "5" } })
    local s = H.send_get(srv.addr, "/slow?s=1")
    H.sleep(0.3)
    os.execute("kill -TERM " .. srv.pid .. "; sleep 0.05; kill -TERM " .. srv.pid)
    local raw = s:receive("*a")
    s:close()
    assert.equal(200, (H.parse(raw)), raw)
    assert.equal(0, srv.wait(10))
    assert.is_nil(srv.output():find("stopping now", 1, true), srv.output())
    srv = H.start("crash.lua", { args = { "--no-master", "--grace", "5" } })
    s = H.send_get(srv.addr, "/slow?s=20")
    H.sleep(0.3)
    os.execute("kill -TERM " .. srv.pid .. "; sleep 0.5; kill -TERM " .. srv.pid)
    srv.wait(10)
    s:close()
    assert.truthy(srv.output():find("stopping now", 1, true), srv.output())
  end)

  it("is logged and ignored: the process goes on serving", function()
    local srv = H.start("crash.lua", { args = { "--no-master" } })
    srv.kill("USR2")
    H.wait_log(srv, 0, "SIGUSR2 ignored: no supervising process")
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)
end)

describe("an upgrade whose app no longer loads", function()
  after_each(H.cleanup)

  it("is refused, says why in --log-file, and the running process goes on", function()
    local dir = H.tmpdir()
    local app, log = dir .. "/app.lua", dir .. "/error.log"
    H.write_file(app, [[
return function(_, client)
  local f = io.open("/proc/self/stat")
  local pid = f:read("l"):match("^%d+")
  f:close()
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", pid, "\n")
end
]])
    local srv = H.start(app, { dir = dir, args = { "--log-file", log }, expect_fail = true })
    srv.addr = dir .. "/scgi.sock"
    H.wait_for(function() return (H.read_file(log) or ""):find("listening on", 1, true) end, 10,
      "scgi-lua to listen")
    local first = pid_of(srv)
    H.write_file(app, "return function(h, c)\n  c:write(\nend\n")
    srv.kill("USR2")
    H.wait_for(function() return (H.read_file(log) or ""):find("upgrade failed", 1, true) end, 10,
      "the upgrade to fail")
    assert.truthy(H.read_file(log):find("app.lua:3:", 1, true), H.read_file(log))
    assert.equal(first, pid_of(srv))
    assert.equal(0, srv.stop())
  end)
end)

describe("a clean stop after a slow worker stop", function()
  after_each(H.cleanup)

  -- The worker is in a blocking C call through the whole --grace: it never gets to stop
  -- accepting itself, and the main thread's stop of accepting ran once at SIGTERM already.
  for _, master in ipairs({ true, false }) do
    it("logs no accept error" .. (master and "" or " (--no-master)"), function()
      local dir = H.tmpdir()
      H.write_file(dir .. "/app.lua", ([[
return function(_, client)
  io.open("%s/in", "w"):close()
  os.execute("sleep 1.5")
  client:write("Status: 200 OK\r\n\r\nok\n")
end
]]):format(dir))
      local srv = H.start(dir .. "/app.lua", { dir = dir, options = { grace = "0.3" },
        args = master and {} or { "--no-master" } })
      local s = H.send_get(srv.addr, "/")
      H.wait_for(function() return H.exists(dir .. "/in") end, 5, "the handler to run")
      srv.kill("TERM")
      srv.wait(10)
      s:close()
      local out = srv.output()
      assert.truthy(out:find("grace period of 0.3 s is over", 1, true), out)
      assert.is_nil(out:find("Invalid argument", 1, true), out)
      assert.is_nil(out:find("accept:", 1, true), out)
    end)
  end
end)
