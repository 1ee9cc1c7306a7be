-- spec/reload_spec.lua: reloading a running scgi-lua: SIGHUP under load through nginx, a request in
-- flight across a reload, an app that fails to load on reload, and --reload-on-change.
local H = require "helper"

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

-- A fresh directory with app.lua answering version; returns the directory and the app's path.
local function app_dir(version)
  local dir = H.tmpdir()
  local app = dir .. "/app.lua"
  H.write_file(app, version_app(version))
  return dir, app
end

describe("reloading", function()
  after_each(H.cleanup)

  it("under load through nginx: ten SIGHUPs, no failed request, the answers move on", function()
    local dir, app = app_dir("v0")
    local srv = H.start(app, { dir = dir, workers = 2 })
    local ng = H.nginx(srv.addr)
    local inode = H.sh_out("stat -c %i " .. H.quote(srv.addr))
    local fds = H.fd_count(H.serving_pid(srv))
    local wrk
    if H.have("wrk") then
      wrk = H.spawn(("exec wrk -t2 -c16 -d4s http://127.0.0.1:%d/"):format(ng.port), dir, "wrk")
    end
    local load = H.http_load(ng.port, "/", 12)
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
    for _, a in ipairs(load.answers) do
      local v = a.body:match("^v(%d+)\n$")
      assert.truthy(v, "unexpected answer " .. a.body)
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
    assert.equal(10, H.count(out, "reloading " .. app))
    assert.equal(10, H.count(out, "worker 0: reloaded " .. app))
    assert.equal(10, H.count(out, "worker 1: reloaded " .. app))
    H.wait_for(function() return H.count(srv.output(), "CLOSED v") == 20 end, 5,
      "the 20 replaced states to be closed")
    for i = 0, 9 do assert.equal(2, H.count(srv.output(), "CLOSED v" .. i .. "\n")) end
    assert.equal(0, H.count(srv.output(), "CLOSED v10\n"))
    -- the listening socket is the same one, and nothing leaked
    assert.equal(inode, H.sh_out("stat -c %i " .. H.quote(srv.addr)))
    H.wait_for(function() return H.fd_count(H.serving_pid(srv)) == fds end, 5, "the descriptors to go back to " .. fds)
    assert.is_nil(ng.error_log():find("[error]", 1, true), ng.error_log())
    ng.stop()
    assert.equal(0, srv.stop())
  end)

  it("a request in flight finishes on the old state; the next one gets the new app", function()
    local dir, app = app_dir("old")
    local srv = H.start(app, { dir = dir })
    local s = assert(H.connect(srv.addr, 10))
    assert(s:send((H.encode(H.nginx_headers("GET", "/slow")))))
    H.sleep(0.2) -- the handler sleeps now
    H.write_file(app, version_app("new"))
    srv.kill("HUP")
    H.wait_for(function() return srv.output():find("worker 0: reloaded", 1, true) end, 5, "the reload")
    local status, body = H.scgi_get(srv.addr, "/")
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
    local dir, app = app_dir("good")
    local srv = H.start(app, { dir = dir, workers = 2 })
    local broken = {
      { "local version = 'x'\nreturn function(headers, client)\n  local x = = 1\nend\n", app .. ":3:" },
      { "local x = 1\nerror('load-time failure')\n", app .. ":2: load-time failure" },
      { "return 42\n", "must return the handler function, but it returned number" },
    }
    for i, case in ipairs(broken) do
      H.write_file(app, case[1])
      srv.kill("HUP")
      H.wait_for(function() return H.count(srv.output(), "reload failed") == 2 * i end, 5,
        "both workers to report the failed reload")
      local out = srv.output()
      for w = 0, 1 do
        local prefix = ("scgi-lua: worker %d: reload failed, the running app goes on serving: "):format(w)
        local found = false
        for _, l in ipairs(H.lines(out)) do
          -- each failure names the file (and, for Lua errors, the line)
          found = found or (l:find(prefix, 1, true) == 1 and l:find(app, 1, true) and l:find(case[2], 1, true)) ~= nil
        end
        assert.is_true(found, "worker " .. w .. " did not log the failure with " .. case[2] .. ":\n" .. out)
      end
      for _ = 1, 6 do
        local status, body = H.scgi_get(srv.addr, "/")
        assert.equal(200, status)
        assert.equal("good\n", body)
      end
    end
    assert.is_nil(srv.output():find("CLOSED good", 1, true))
    -- fixed: the next reload takes it
    H.write_file(app, version_app("fixed"))
    srv.kill("HUP")
    H.wait_for(function() return H.count(srv.output(), ": reloaded " .. app) == 2 end, 5, "the reload")
    for _ = 1, 6 do assert.equal("fixed\n", select(2, H.scgi_get(srv.addr, "/"))) end
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
        if select(2, H.scgi_get(srv.addr, "/")) ~= want then return false end
      end
      return true
    end
    assert.equal("a1+m1", select(2, H.scgi_get(srv.addr, "/")))
    H.sleep(0.05)
    local t0 = H.now()
    write_app("a2")
    H.wait_for(function() return answers("a2+m1") end, 3, "the edited app to be served")
    local took = H.now() - t0
    H.wait_log(srv, 0, app .. " changed")
    H.sleep(0.05)
    t0 = H.now()
    H.write_file(mod, 'return { version = "m2" }\n')
    H.wait_for(function() return answers("a2+m2") end, 3, "the edited module to be served")
    H.wait_log(srv, 0, mod .. " changed")
    assert.is_true(took < 3 and H.now() - t0 < 3)
    -- a broken edit is logged and changes nothing; the repaired file is taken
    H.write_file(app, "return function(\n")
    H.wait_for(function() return srv.output():find("reload failed", 1, true) end, 3, "the failed reload")
    assert.truthy(srv.output():find(app .. ":2:", 1, true), srv.output())
    assert.is_true(answers("a2+m2"))
    write_app("a3")
    H.wait_for(function() return answers("a3+m2") end, 3, "the repaired app to be served")
    -- a file the app does not use changes nothing
    local before = H.count(srv.output(), "reloading ")
    H.write_file(dir .. "/unrelated.lua", "return 1\n")
    H.sleep(1.5)
    assert.equal(before, H.count(srv.output(), "reloading "))
    assert.equal(0, srv.stop())
  end)
end)

-- Issue 18, item 4: loading runs on a thread of its own under --load-timeout; item 6 and 13:
-- os.exit in a worker state raises.
describe("loading under --load-timeout", function()
  after_each(H.cleanup)

  -- GET / on srv within 1 s (a worker that pauses fails it); returns the body.
  local function quick_get(addr)
    local head = H.encode(H.nginx_headers("GET", "/"))
    local t0 = H.now()
    local raw, err = H.raw(addr, head, 1)
    local status, _, body = H.parse(raw)
    assert.equal(200, status, "no answer within 1 s: " .. tostring(err))
    assert.is_true(H.now() - t0 < 1)
    return body
  end

  -- Requests every 0.05 s for `seconds`: each must be answered at once by the old app.
  local function old_app_answers(addr, want, seconds)
    local t_end, n = H.now() + seconds, 0
    while H.now() < t_end do
      assert.equal(want, quick_get(addr))
      n = n + 1
      H.sleep(0.05)
    end
    return n
  end

  local function load_timeouts(srv)
    local status, _, body = H.get_stats(srv.dir .. "/stats.sock", "/")
    assert.equal(200, status)
    local n = 0 -- per worker, then the process's total
    for v in body:gmatch('"load_timeouts":(%d+)') do n = math.max(n, tonumber(v)) end
    return n
  end

  it("a reload whose app never returns is stopped at the limit, counted; the old app answers throughout",
    function()
      local dir, app = app_dir("v1")
      local srv = H.start(app, { dir = dir, workers = 2,
        options = { ["load-timeout"] = "1", stats = dir .. "/stats.sock" } })
      assert.equal("v1\n", quick_get(srv.addr))
      local mark = #srv.output()
      H.write_file(app, "local n = 0\nwhile true do n = n + 1 end\n")
      srv.kill("HUP")
      assert.is_true(old_app_answers(srv.addr, "v1\n", 1.8) > 10)
      H.wait_for(function() return H.count(H.log_since(srv, mark), "reload failed") == 2 end, 5,
        "both workers to report the failed reload")
      assert.equal(2, H.count(H.log_since(srv, mark), "loading took longer than --load-timeout (1.0 s)"))
      H.wait_for(function() return load_timeouts(srv) == 2 end, 5, "the figure to count both")
      local _, _, metrics = H.get_stats(srv.dir .. "/stats.sock", "/metrics")
      assert.truthy(metrics:find('scgi_load_timeouts_total{process="0",worker="1"} 1', 1, true), metrics)
      assert.equal("v1\n", quick_get(srv.addr))
      -- a good file is taken by the next reload
      H.write_file(app, version_app("v2"))
      srv.kill("HUP")
      H.wait_for(function() return H.count(H.log_since(srv, mark), ": reloaded " .. app) == 2 end, 5, "the reload")
      for _ = 1, 4 do assert.equal("v2\n", quick_get(srv.addr)) end
      assert.equal(0, srv.stop())
    end)

  it("a reload stuck in a C call is abandoned a second past the limit; the old app serves on", function()
    local dir, app = app_dir("v1")
    local srv = H.start(app, { dir = dir, workers = 1, options = { ["load-timeout"] = "0.5" } })
    local mark = #srv.output()
    H.write_file(app, 'os.execute("sleep 3")\nreturn function() end\n')
    local t0 = H.now()
    srv.kill("HUP")
    old_app_answers(srv.addr, "v1\n", 1)
    H.wait_log(srv, mark, "stuck in a C call", 5)
    assert.is_true(H.now() - t0 < 2.5)
    assert.truthy(H.log_since(srv, mark):find("worker 0: reload failed, the running app goes on serving", 1, true))
    -- while it is stuck, a reload is refused and the old app serves on
    H.write_file(app, version_app("v2"))
    srv.kill("HUP")
    H.wait_log(srv, mark, "an earlier load is still stuck in a C call", 5)
    assert.equal("v1\n", quick_get(srv.addr))
    -- once the call returned, the next reload loads
    H.wait_for(function() return H.now() - t0 > 3.2 end, 5, "the C call to return")
    -- (on a loaded machine the call may return later: a refused SIGHUP is sent again, bounded)
    H.wait_for(function()
      srv.kill("HUP")
      return (pcall(H.wait_log, srv, mark, "worker 0: reloaded", 1))
    end, 10, "a reload once the C call returned")
    assert.equal("v2\n", quick_get(srv.addr))
    assert.equal(0, srv.stop())
  end)

  it("SIGHUPs that come while a slow load runs are not lost: the last file written serves", function()
    local dir, app = app_dir("v0")
    local srv = H.start(app, { dir = dir, workers = 1 })
    local mark = #srv.output()
    local function slow_app(v)
      return "local t = os.clock()\nwhile os.clock() - t < 0.4 do end\n" .. version_app(v)
    end
    H.write_file(app, slow_app("v1"))
    srv.kill("HUP")
    H.sleep(0.1)
    assert.equal("v0\n", quick_get(srv.addr)) -- the load runs; the worker answers
    H.write_file(app, slow_app("v2"))
    srv.kill("HUP")
    srv.kill("HUP")
    H.wait_for(function() return quick_get(srv.addr) == "v2\n" end, 5, "the last file to serve")
    H.wait_log(srv, mark, "the reload follows the load under way", 5)
    assert.equal(0, srv.stop())
  end)

  it("SIGTERM while a reload loads: the load is stopped and the program exits 0 at once", function()
    local dir, app = app_dir("v1")
    local srv = H.start(app, { dir = dir, workers = 2 })
    H.write_file(app, "local t = os.clock()\nwhile os.clock() - t < 8 do end\n" .. version_app("v2"))
    srv.kill("HUP")
    H.sleep(0.3)
    assert.equal("v1\n", quick_get(srv.addr))
    local t0 = H.now()
    assert.equal(0, srv.stop())
    assert.is_true(H.now() - t0 < 2, ("the stop took %.1f s"):format(H.now() - t0))
    assert.is_nil(srv.output():find("reloaded", 1, true))
  end)

  it("at start and with --check, a load past the limit exits 1 with a clear message", function()
    local dir = H.tmpdir()
    local app = dir .. "/spin.lua"
    H.write_file(app, "while true do end\n")
    local t0 = H.now()
    local rc, _, err = H.run("--check --load-timeout 0.5 " .. H.quote(app))
    assert.equal(1, rc)
    assert.truthy(err:find("cannot load " .. app .. ": loading took longer than --load-timeout (0.5 s)", 1, true), err)
    rc, _, err = H.run("--load-timeout 0.5 --socket " .. H.quote(dir .. "/s.sock") .. " " .. H.quote(app))
    assert.equal(1, rc)
    assert.truthy(err:find("--load-timeout (0.5 s)", 1, true), err)
    -- a load stuck in a C call is abandoned: the start fails all the same
    H.write_file(app, 'os.execute("sleep 5")\nreturn function() end\n')
    rc, _, err = H.run("--check --load-timeout 0.5 " .. H.quote(app))
    assert.equal(1, rc)
    assert.truthy(err:find("stuck in a C call", 1, true), err)
    assert.is_true(H.now() - t0 < 8)
  end)

  it("an app that calls os.exit while loading: the start and --check exit 1 and say so", function()
    local dir = H.tmpdir()
    local app = dir .. "/exit.lua"
    H.write_file(app, "os.exit(3)\n")
    local rc, _, err = H.run("--check " .. H.quote(app))
    assert.equal(1, rc)
    assert.truthy(err:find("the app called os.exit(3) while loading", 1, true), err)
    rc, _, err = H.run("--socket " .. H.quote(dir .. "/s.sock") .. " " .. H.quote(app))
    assert.equal(1, rc)
    assert.truthy(err:find("the app called os.exit(3) while loading", 1, true), err)
  end)

  it("os.exit in a handler raises in that request (500, logged); the others go on", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, [[
local scgi = require "scgi"
return function(headers, client)
  if headers.REQUEST_URI == "/exit" then os.exit(2) end
  if headers.REQUEST_URI == "/slow" then scgi.sleep(0.5) end
  client:write("Status: 200 OK\r\n\r\nalive\n")
end
]])
    local srv = H.start(app, { dir = dir, workers = 1 })
    local finish = H.start_request(srv.addr, "/slow")
    H.sleep(0.1)
    local out = H.get_500(srv, "/exit", "os.exit(2) is refused in a worker")
    assert.truthy(out:find("it would end the serving process", 1, true), out)
    local status, _, body = finish()
    assert.equal(200, status)
    assert.equal("alive\n", body)
    assert.equal("alive\n", select(2, H.scgi_get(srv.addr, "/")))
    assert.equal(0, srv.stop())
  end)
end)
