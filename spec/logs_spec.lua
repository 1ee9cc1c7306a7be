-- spec/logs_spec.lua: the access log (--access-log), the error log (--log-file, --log-level, ISO
-- times, request ids) and reopening both on SIGUSR1.
local H = require "helper"

-- TIME wWORKER #ID METHOD URI STATUS BYTES_SENT DURATION_MS
local ACCESS = "^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ) w(%d+) #(%d+) (%S+) (%S+) (%d+) (%d+) (%d+%.%d%d)$"
local function parse_access(text)
  local out = {}
  for _, l in ipairs(H.lines(text)) do
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
  for _, l in ipairs(H.lines(text)) do
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
    H.wait_for(function() return #H.lines(H.read_file(log) or "") == 6 end, 5, "six access log lines")
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
    H.wait_log_match(srv, 0, "scgi%-lua: #%d+ %- %-: 400 Bad Request: ")
    assert.equal(0, srv.stop())
  end)

  it("a client that leaves while its handler waits is not logged as a handler that wrote nothing", function()
    local dir = H.tmpdir()
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["access-log"] = dir .. "/access.log" } })
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("GET", "/slow?ms=200"))))
    H.sleep(0.05)
    s:close()
    H.wait_for(function() return #H.lines(H.read_file(dir .. "/access.log") or "") == 1 end, 5, "the access line")
    assert.equal(200, (H.scgi_get(srv.addr, "/ok")))
    assert.equal(0, srv.stop())
    assert.is_nil(srv.output():find("the handler returned without writing a response", 1, true), srv.output())
  end)

  it("--access-log - writes to stdout; --log-file puts the error log in a file with ISO times", function()
    local dir = H.tmpdir()
    local errlog = dir .. "/error.log"
    local srv = H.start_quiet("ops_app.lua", { dir = dir, options = { ["access-log"] = "-", ["log-file"] = errlog } },
      function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
    local sock = dir .. "/scgi.sock"
    assert.equal(200, (H.scgi_get(sock, "/ok")))
    assert.equal(500, (H.scgi_get(sock, "/error")))
    H.wait_for(function() return #H.lines(srv.output()) == 2 end, 5, "two access lines on stdout")
    local e = parse_access(srv.output())
    assert.equal("/ok", e[1].uri)
    assert.equal("/error", e[2].uri)
    assert.equal(0, srv.stop())
    local lines = H.lines(H.read_file(errlog))
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
    srv = H.start_quiet("ops_app.lua", { options = { ["access-log"] = "-" } },
      function(p) return p.output():find("listening on", 1, true) end)
    srv.kill("USR1")
    H.sleep(0.2)
    assert.equal(200, (H.scgi_get(srv.dir .. "/scgi.sock", "/ok")))
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
      local srv = H.start_quiet("ops_app.lua", { dir = dir, options = { ["log-level"] = lv[1], timeout = "0.3" } },
        function() return H.can_connect(sock) end)
      assert.equal(200, (H.scgi_get(sock, "/ok")))
      local s = assert(H.connect(sock, 5)) -- says nothing: closed after --timeout with a warning
      local data, err, partial = s:receive("*a")
      s:close()
      assert.equal("", data or partial, tostring(err))
      assert.equal(500, (H.scgi_get(sock, "/error")))
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
    local rc, _, err = H.run(app .. " --log-level loud")
    assert.equal(2, rc)
    assert.truthy(err:find("invalid value for --log-level: 'loud' (expected error, warn, info or debug)", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --log-file /nonexistent-dir/x.log")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot open the log file /nonexistent-dir/x.log: No such file or directory", 1, true), err)
    rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --access-log /nonexistent-dir/a.log")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot open the access log /nonexistent-dir/a.log", 1, true), err)
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)

  it("SIGUSR1 reopens the access log and the error log after they were moved away", function()
    local dir = H.tmpdir()
    local access, errlog = dir .. "/access.log", dir .. "/error.log"
    local srv = H.start_quiet("ops_app.lua", { dir = dir, workers = 2, options = { ["access-log"] = access, ["log-file"] = errlog } },
      function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
    local sock = dir .. "/scgi.sock"
    local function count(path, what) return H.count(H.read_file(path) or "", what) end
    for round = 1, 2 do
      for _ = 1, 3 do assert.equal(200, (H.scgi_get(sock, "/ok"))) end
      assert.equal(500, (H.scgi_get(sock, "/error")))
      H.wait_for(function() return #H.lines(H.read_file(access) or "") == 4 and count(errlog, "handler error") == 1 end,
        5, "the lines of round " .. round)
      assert(os.rename(access, access .. "." .. round))
      assert(os.rename(errlog, errlog .. "." .. round))
      srv.kill("USR1")
      H.wait_for(function() return H.exists(access) and H.exists(errlog) end, 5, "the logs to be reopened")
    end
    assert.equal(404, (H.scgi_get(sock, "/missing?not")))
    H.wait_for(function() return #H.lines(H.read_file(access) or "") == 1 end, 5, "a line in the new access log")
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

  it("the text access log escapes the method and URI as the JSON one does: no forged line, no raw control byte", function()
    local dir = H.tmpdir()
    local access = dir .. "/access.log"
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["access-log"] = access } })
    local forged = "/x\n2026-01-01T00:00:00.000Z w0 #99 GET /fake 200 0 0.00"
    H.request(srv.addr, "GET", forged)
    H.request(srv.addr, "G\27[2J\\T", "/y\27[31m z\\")
    H.wait_for(function() return H.count(H.read_file(access) or "", "\n") >= 2 end, 5, "two access log lines")
    local text = H.read_file(access)
    assert.is_nil(text:find("[\0-\9\11-\31\127-\255]"), text) -- no control byte but the newlines
    local lines = parse_access(text)
    assert.equal(2, #lines, text)
    assert.equal("/x\\u000a2026-01-01T00:00:00.000Z\\u0020w0\\u0020#99\\u0020GET\\u0020/fake\\u0020200\\u00200\\u00200.00", lines[1].uri)
    assert.equal("G\\u001b[2J\\\\T", lines[2].method)
    assert.equal("/y\\u001b[31m\\u0020z\\\\", lines[2].uri)
    assert.equal(0, srv.stop())
  end)

  it("a log path that is a symbolic link is refused at the start and at a reopen, its target untouched", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/target", "keep\n")
    os.execute("ln -s target " .. H.quote(dir .. "/link.log"))
    local app = H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/s.sock")
    for _, o in ipairs({ { "--log-file", "the log file" }, { "--access-log", "the access log" } }) do
      local rc, _, err = H.run(app .. " " .. o[1] .. " " .. H.quote(dir .. "/link.log"))
      assert.equal(1, rc)
      assert.truthy(err:find("cannot open " .. o[2] .. " " .. dir .. "/link.log: it is a symbolic link", 1, true), err)
    end
    assert.equal("keep\n", H.read_file(dir .. "/target"))
    -- moved away and replaced by a link before SIGUSR1: the old file is kept and the reopen refused
    local access, errlog = dir .. "/access.log", dir .. "/error.log"
    local srv = H.start_quiet("ops_app.lua", { dir = dir, options = { ["access-log"] = access, ["log-file"] = errlog } },
      function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
    assert(os.rename(access, access .. ".1"))
    os.execute("ln -s target " .. H.quote(access))
    srv.kill("USR1")
    H.wait_for(function() return (H.read_file(errlog) or ""):find("cannot reopen the access log", 1, true) end, 5,
      "the reopen failure in the error log")
    assert.truthy(H.read_file(errlog):find("cannot reopen the access log " .. access .. ": it is a symbolic link", 1, true))
    assert.equal(200, (H.scgi_get(dir .. "/scgi.sock", "/ok")))
    H.wait_for(function() return #H.lines(H.read_file(access .. ".1") or "") == 1 end, 5, "the line in the old access log")
    assert.equal("keep\n", H.read_file(dir .. "/target"))
    assert.equal(0, srv.stop())
  end)

  describe("as root with --user", function()
    if H.uid() ~= "0" then
      pending("these run as root only (CI runs the specs as root)")
      return
    end

    it("a reopen the dropped user may not make is logged (old file and stderr) and counted", function()
      local dir = H.tmpdir() -- root's, mode 755: nobody cannot create files in it
      local access, errlog, stats = dir .. "/access.log", dir .. "/error.log", dir .. "/stats.sock"
      local srv = H.start_quiet("ops_app.lua", { dir = dir, options = { user = "nobody", stats = stats,
        ["access-log"] = access, ["log-file"] = errlog } },
        function() return (H.read_file(errlog) or ""):find("listening on", 1, true) end)
      assert.equal(200, (H.scgi_get(dir .. "/scgi.sock", "/ok")))
      H.wait_for(function() return #H.lines(H.read_file(access) or "") == 1 end, 5, "the first access line")
      assert(os.rename(access, access .. ".1"))
      assert(os.rename(errlog, errlog .. ".1"))
      srv.kill("USR1")
      local want = "cannot reopen the access log " .. access .. ": Permission denied"
      H.wait_for(function() return (H.read_file(errlog .. ".1") or ""):find(want, 1, true) end, 5,
        "the failure in the old error log")
      assert.truthy(srv.output():find(want, 1, true), srv.output())
      assert.truthy(srv.output():find("uid 65534", 1, true), srv.output())
      local figures = H.wait_for(function()
        local _, _, body = H.get_stats(stats)
        local j = H.json_decode(body)
        return j.log_reopen_failures >= 2 and j
      end, 5, "the failures in the figures")
      assert.equal(2, figures.log_reopen_failures) -- the serving process's error and access logs
      local _, _, metrics = H.get_stats(stats, "/metrics")
      assert.truthy(metrics:find("\nscgi_log_reopen_failures_total 2\n", 1, true), metrics)
      assert.equal(0, srv.stop())
    end)
  end)
end)
