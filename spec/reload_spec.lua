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
    local before = H.count(srv.output(), "reloading ")
    H.write_file(dir .. "/unrelated.lua", "return 1\n")
    H.sleep(1.5)
    assert.equal(before, H.count(srv.output(), "reloading "))
    assert.equal(0, srv.stop())
  end)
end)
