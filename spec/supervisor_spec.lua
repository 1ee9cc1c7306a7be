-- spec/supervisor_spec.lua: the supervising process: a crash costs only the requests in flight
-- (the listener stays open, a new serving process answers within a second, no connection is
-- refused), a crash loop backs off, SIGUSR2 upgrades with no failed request, SIGTERM drains,
-- --processes N, --pid-file names the supervisor, the figures cover every process, --no-master.
local H = require "helper"

local children, pid_of = H.children, H.pid_of

-- crash.lua on 2 workers behind a private nginx that 8 GETs of /hello at a time have kept busy
-- for 0.5 s (the load goes on with step, run_for...): returns the server, the nginx, the pid of
-- the serving process and the load.
local function under_load()
  local srv = H.start("crash.lua", { workers = 2 })
  local ng = H.nginx(srv.addr)
  local pid = pid_of(srv)
  local load = H.http_load(ng.port, "/hello", 8)
  load.run_for(0.5)
  return srv, ng, pid, load
end

describe("the supervisor", function()
  after_each(H.cleanup)

  it("runs the workers in a serving process of its own, and says where it listens", function()
    local srv = H.start("crash.lua", { workers = 2 })
    local kids = children(srv.pid)
    assert.equal(1, #kids)
    assert.equal(kids[1], pid_of(srv))
    assert.truthy(srv.output():find("listening on unix:" .. srv.addr .. " (2 workers)", 1, true))
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(srv.addr))
  end)

  it("replaces a serving process that crashes within a second, under load, refusing no one", function()
    local srv, ng, first, load = under_load()
    local before = #load.answers
    local t0 = H.now()
    local s = H.send_get(srv.addr, "/crash")
    local crashed = H.wait_for(function()
      load.step(0.01)
      return srv.output():find("serving process " .. first .. " killed by signal " .. H.crash_signal(), 1, true)
    end, 5, "the crash to be logged")
    assert.truthy(crashed)
    s:close()
    local second
    load.run_until(function()
      local kids = children(srv.pid)
      second = kids[1] ~= first and kids[1] or nil
      return second and #load.answers > before + 20
    end, 5, "answers from the new serving process")
    local took = H.now() - t0
    load.drain()
    assert.is_true(took < 3, "answers came back after " .. took .. " s")
    assert.equal(second, pid_of(srv))
    -- the requests in flight in the dead process may fail (nginx: 502); nothing else does
    for _, f in ipairs(load.failures) do assert.truthy(f:find("status 502", 1, true), f) end
    assert.is_true(#load.failures <= 16, #load.failures .. " requests failed")
    assert.is_nil(ng.error_log():find("Connection refused", 1, true), ng.error_log())
    ng.stop()
    assert.equal(0, srv.stop())
  end)

  it("backs off when the serving process dies again and again, and says so", function()
    local srv = H.start("crash.lua")
    local mark = #srv.output()
    for round = 1, 3 do
      local pid = pid_of(srv)
      H.raw(srv.addr, (H.encode(H.nginx_headers("GET", "/crash"))), 5)
      H.wait_for(function() return srv.output():find("serving process " .. pid .. " killed", mark, true) end,
        5, "crash " .. round)
      H.wait_for(function()
        local k = children(srv.pid)[1]
        return k and k ~= pid
      end, 10, "a new serving process")
      H.wait_for(function() return H.scgi_get(srv.addr, "/hello") == 200 end, 10, "it to serve")
    end
    H.wait_log(srv, mark, "starting another in 1 s (2 quick deaths in a row")
    H.wait_log(srv, mark, "starting another in 2 s (3 quick deaths in a row")
    assert.equal(0, srv.stop())
  end)

  it("upgrades on SIGUSR2 with no failed request: new serving processes, the old ones drain", function()
    local srv, ng, old, load = under_load()
    local s = H.send_get(srv.addr, "/slow?s=1") -- a request in flight across the upgrade
    srv.kill("USR2")
    load.run_until(function()
      return srv.output():find("upgrade: 1 new serving process serves; the old ones drain", 1, true)
    end, 10, "the upgrade")
    load.run_until(function()
      local kids = children(srv.pid)
      return #kids == 1 and kids[1] ~= old
    end, 10, "the old serving process to end")
    load.run_for(0.5)
    load.drain()
    assert.same({}, load.failures)
    assert.is_true(#load.answers > 50, #load.answers .. " answers")
    local raw = s:receive("*a")
    s:close()
    assert.equal("slow " .. old .. "\n", select(3, H.parse(raw)))
    assert.are_not.equal(old, pid_of(srv))
    ng.stop()
    assert.equal(0, srv.stop())
  end)

  it("a second SIGUSR2 while the last upgrade's old process drains waits for it; upgrades go on", function()
    local srv = H.start("crash.lua", { options = { grace = "10" } })
    local old = pid_of(srv)
    local s = H.send_get(srv.addr, "/slow?s=5")
    H.sleep(0.3)
    local serves = "upgrade: 1 new serving process serves"
    srv.kill("USR2")
    local t0 = H.now()
    H.wait_for(function() return H.count(srv.output(), serves) == 1 end, 10, "the first upgrade")
    H.sleep(math.max(0, 0.5 - (H.now() - t0)))
    srv.kill("USR2")
    local raw = s:receive("*a") -- the old process's request is answered; it ends
    s:close()
    assert.equal("slow " .. old .. "\n", select(3, H.parse(raw)))
    H.wait_for(function() return H.count(srv.output(), serves) == 2 end, 15, "the waiting upgrade")
    srv.kill("USR2")
    H.wait_for(function() return H.count(srv.output(), serves) == 3 end, 15, "a later upgrade")
    local out = srv.output()
    assert.truthy(out:find("upgrade: waiting for the old serving processes of the last upgrade", 1, true), out)
    assert.is_nil(out:find("not now", 1, true), out)
    H.wait_for(function() return #children(srv.pid) == 1 end, 10, "one serving process")
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)

  it("answers every connection the kernel accepted across repeated upgrades under load", function()
    -- 4 connections straight to the socket, each sending the next request as soon as the last was
    -- answered (soak/hammer.c), for 7 s; SIGUSR2 every second. A client the old serving process
    -- had taken from the listener but not served (handed to a worker that ended its loop first)
    -- was closed unanswered: about one per upgrade.
    local dir = H.tmpdir()
    local hammer = dir .. "/hammer"
    assert.is_true(os.execute("cc -O2 -pthread -o " .. H.quote(hammer) .. " " ..
      H.quote(H.root .. "/soak/hammer.c")))
    local srv = H.start("crash.lua", { dir = dir, workers = 2 })
    local load = H.spawn(H.quote(hammer) .. " " .. H.quote(srv.addr) .. " /hello 4 7", dir, "hammer")
    local serves = "new serving process serves; the old ones drain"
    for round = 1, 5 do
      H.sleep(1)
      srv.kill("USR2")
      H.wait_for(function() return H.count(srv.output(), serves) == round end, 10, "upgrade " .. round)
    end
    assert.equal(0, load.wait(20))
    local out = load.output()
    local answered, reset, unanswered, bad = out:match("answered (%d+) refused %d+ reset (%d+) unanswered (%d+) bad (%d+)")
    assert.truthy(answered, out)
    assert.equal("0", reset, out)
    assert.equal("0", unanswered, out)
    assert.equal("0", bad, out)
    assert.is_true(tonumber(answered) > 5000, out)
    assert.equal(0, srv.stop())
  end)

  it("SIGTERM lets the requests in flight finish, then exits 0", function()
    local srv = H.start("crash.lua")
    local s = H.send_get(srv.addr, "/slow?s=1")
    H.sleep(0.2)
    srv.kill("TERM")
    H.wait_for(function() return not H.exists(srv.addr) end, 5, "the socket file to go")
    local raw = s:receive("*a")
    s:close()
    assert.equal(200, H.parse(raw))
    assert.equal(0, srv.wait(10))
  end)

  it("--processes 2: two serving processes; a crash costs one of them", function()
    local srv = H.start("crash.lua", { workers = 1, args = { "--processes", "2" } })
    assert.truthy(srv.output():find("(2 workers in 2 processes)", 1, true))
    local kids = children(srv.pid)
    assert.equal(2, #kids)
    local s = H.send_get(srv.addr, "/slow?s=1") -- a slow request on one of them
    H.sleep(0.2)
    H.raw(srv.addr, (H.encode(H.nginx_headers("GET", "/crash"))), 5)
    local crashed = tonumber(H.wait_for(function()
      return srv.output():match("serving process (%d+) killed by signal " .. H.crash_signal())
    end, 5, "the crash"))
    local other = crashed == kids[1] and kids[2] or kids[1]
    local raw = s:receive("*a")
    s:close()
    local body = select(3, H.parse(raw))
    -- the slow request lived through the crash unless it was on the crashed process
    if body then assert.equal("slow " .. other .. "\n", body) end
    H.wait_for(function() return #children(srv.pid) == 2 end, 5, "two serving processes again")
    assert.equal(0, srv.stop())
  end)

  it("--pid-file holds the supervisor's pid; --stats covers every serving process", function()
    local dir = H.tmpdir()
    local srv = H.start("crash.lua", { dir = dir, workers = 1,
      args = { "--processes", "2", "--pid-file", dir .. "/pid", "--stats", dir .. "/stats.sock" } })
    assert.equal(tostring(srv.pid), (H.read_file(dir .. "/pid"):gsub("%s", "")))
    for _ = 1, 10 do assert.equal(200, (H.scgi_get(srv.addr, "/hello"))) end
    local st = H.wait_stats(dir .. "/stats.sock", function(f) return f.total.requests >= 10 end, 5,
      "10 requests counted")
    assert.equal(srv.pid, st.pid)
    assert.equal(2, #st.processes)
    assert.equal(2, #st.workers)
    assert.equal(10, st.total.requests)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(dir .. "/pid"))
  end)

  it("a second instance on the socket of one whose listen queue is full says so at once", function()
    local srv = H.start("crash.lua", { options = { backlog = "1" } })
    local kid = pid_of(srv)
    os.execute("kill -STOP " .. kid)
    -- fill the listen queue: a connect that would block means it is full
    local unix = require "socket.unix"
    local clients = {}
    for _ = 1, 8 do
      local c = unix()
      c:settimeout(0.2)
      if not c:connect(srv.addr) then
        c:close()
        break
      end
      clients[#clients + 1] = c
    end
    local t0 = H.now()
    local second = H.start("crash.lua", { dir = H.tmpdir(), socket = srv.addr, expect_fail = true })
    local ok, code = pcall(second.wait, 5)
    local took = H.now() - t0
    if not ok then H.kill(second) end
    os.execute("kill -CONT " .. kid)
    for _, c in ipairs(clients) do c:close() end
    assert.is_true(ok, "the second instance still ran after " .. took .. " s")
    assert.equal(1, code)
    assert.truthy(second.output():find("address in use: a server is answering on", 1, true),
      second.output())
    assert.equal(0, srv.stop())
  end)

  it("trusts its own copy of the figures table's shape, not the header a serving process can write", function()
    local dir = H.tmpdir()
    -- a handler that overwrites the shared table's header (nprocs, nworkers, shared) through
    -- /proc/self/mem, as any code in a serving process could
    H.write_file(dir .. "/app.lua", [[
return function(_, client)
  local start
  for line in io.lines("/proc/self/maps") do
    if line:find("scgi-lua-stats", 1, true) then start = tonumber(line:match("^(%x+)"), 16) break end
  end
  local f = assert(io.open("/proc/self/mem", "r+b"))
  assert(f:seek("set", start + 4))
  assert(f:write(string.pack("<I4I4I4", 0x7fffffff, 0x7fffffff, 0)))
  f:close()
  client:write("Status: 200 OK\r\n\r\ndone\n")
end
]])
    local srv = H.start(dir .. "/app.lua", { dir = dir, args = { "--stats", dir .. "/stats.sock" } })
    assert.equal(200, (H.scgi_get(srv.addr, "/")))
    local status, _, body = H.get_stats(dir .. "/stats.sock", "/")
    assert.equal(200, status)
    local st = H.json_decode(body)
    assert.equal(1, #st.processes)
    assert.equal(1, #st.workers)
    assert.equal(200, (H.get_stats(dir .. "/stats.sock", "/metrics")))
    assert.equal(200, (H.get_stats(dir .. "/stats.sock", "/text")))
    assert.equal(0, srv.stop(), srv.output())
  end)

  it("--no-master serves in one process", function()
    local srv = H.start("crash.lua", { args = { "--no-master" } })
    assert.same({}, children(srv.pid))
    assert.equal(srv.pid, pid_of(srv))
    assert.equal(0, srv.stop())
  end)

  -- A supervisor killed outright (SIGKILL, the OOM killer) leaves no serving process behind:
  -- each stops on its own; with --user the parent-death signal, which the change of user
  -- clears, is set again.
  local function orphan_stops(opts)
    local srv = H.start("crash.lua", opts)
    local kid = pid_of(srv)
    srv.kill("KILL")
    srv.wait(5)
    local gone = H.wait_for(function() return not H.exists("/proc/" .. kid) end, 5,
      "the serving process to stop")
    assert.truthy(gone)
  end

  it("a serving process stops when its supervisor is killed", function()
    orphan_stops({ workers = 2 })
  end)

  it("a serving process stops when its supervisor is killed, also after --user", function()
    if H.uid() ~= "0" then
      pending("as root only")
      return
    end
    orphan_stops({ options = { user = "nobody", group = "nogroup" } })
  end)
end)

-- Clock ticks (1/100 s) of CPU a process has used.
local function cpu_ticks(pid)
  local stat = H.read_file("/proc/" .. pid .. "/stat") or ""
  local fields = H.lines(stat:gsub("^.*%) ", ""):gsub(" ", "\n"))
  return tonumber(fields[12]) + tonumber(fields[13])
end

-- n idle TCP clients of host:port (connected, sending nothing).
local function idle_clients(port, n)
  local socket = require "socket"
  local list = {}
  for _ = 1, n do
    local c = socket.tcp()
    c:settimeout(2)
    assert(c:connect("127.0.0.1", port))
    list[#list + 1] = c
  end
  return list
end

local function close_all(list)
  for _, c in ipairs(list) do c:close() end
end

describe("the supervisor out of descriptors", function()
  after_each(H.cleanup)

  it("--stats holds at most 64 connections: 300 idle clients neither spin it nor stop a respawn", function()
    local port = H.free_port()
    local srv = H.start("crash.lua", { workers = 2, env = "ulimit -n 256;",
      options = { stats = "127.0.0.1:" .. port } })
    local first = pid_of(srv)
    local clients = idle_clients(port, 300)
    -- the ones past 64 are closed at once
    local closed = H.wait_for(function()
      local n = 0
      for _, c in ipairs(clients) do
        c:settimeout(0)
        local _, err = c:receive(1)
        if err == "closed" then n = n + 1 end
      end
      return n >= 300 - 64 and n
    end, 5, "the clients past 64 to be closed")
    assert.equal(300 - 64, closed)
    local t0 = cpu_ticks(srv.pid)
    H.sleep(1)
    local used = cpu_ticks(srv.pid) - t0
    assert.is_true(used < 20, "the supervisor used " .. used .. " ticks of CPU in 1 s")
    os.execute("kill -KILL " .. first)
    H.wait_for(function()
      local ok, pid = pcall(pid_of, srv)
      return ok and pid ~= first
    end, 5, "a new serving process")
    close_all(clients)
    H.wait_for(function() return (H.get_stats("127.0.0.1:" .. port, "/")) == 200 end, 5, "stats")
    assert.equal(0, srv.stop())
  end)

  it("pauses --stats on EMFILE and retries a serving process it cannot start, and says so", function()
    local port = H.free_port()
    local srv = H.start("crash.lua", { env = "ulimit -n 40;", options = { stats = "127.0.0.1:" .. port } })
    local first = pid_of(srv)
    local mark = #srv.output()
    local clients = idle_clients(port, 60)
    H.wait_log(srv, mark, "stats: cannot accept: Too many open files; pausing")
    local t0 = cpu_ticks(srv.pid)
    H.sleep(1)
    local used = cpu_ticks(srv.pid) - t0
    os.execute("kill -KILL " .. first)
    H.wait_log(srv, mark, "cannot make a pipe: Too many open files; trying again in 1 s")
    close_all(clients)
    H.wait_for(function()
      local ok, pid = pcall(pid_of, srv)
      return ok and pid ~= first
    end, 10, "a new serving process")
    assert.is_true(used < 20, "the supervisor used " .. used .. " ticks of CPU in 1 s")
    local _, _, body = H.get_stats("127.0.0.1:" .. port, "/")
    assert.is_true(H.json_decode(body).spawn_failures >= 1, body)
    local _, _, metrics = H.get_stats("127.0.0.1:" .. port, "/metrics")
    assert.truthy(metrics:find("\nscgi_spawn_failures_total [1-9]"), metrics)
    assert.equal(1, H.count(srv.output(), "stats: cannot accept"), srv.output())
    assert.equal(0, srv.stop())
  end)

  it("retries when the program file is gone for a moment (a deploy), and says why", function()
    local dir = H.tmpdir()
    local copy = dir .. "/scgi-lua"
    os.execute("cp " .. H.quote(H.program) .. " " .. H.quote(copy))
    local srv = H.start("crash.lua", { dir = dir, program = copy })
    local first = pid_of(srv)
    local mark = #srv.output()
    os.rename(copy, copy .. ".away")
    os.execute("kill -KILL " .. first)
    H.wait_log(srv, mark, "cannot run the program file " .. copy .. ": No such file or directory")
    os.rename(copy .. ".away", copy)
    H.wait_for(function()
      local ok, pid = pcall(pid_of, srv)
      return ok and pid ~= first
    end, 15, "a new serving process")
    assert.equal(0, srv.stop())
  end)
end)
