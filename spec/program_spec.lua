-- spec/program_spec.lua: the scgi-lua program: options and exit codes, app files that cannot be
-- loaded, and stopping on SIGTERM and SIGINT.
local H = require "helper"

local app = H.quote(H.apps .. "/client_edges.lua")

describe("scgi-lua options", function()
  it("--help exits 0 and lists every option", function()
    local rc, out, err = H.run("--help")
    assert.equal(0, rc)
    assert.equal("", err)
    assert.truthy(out:find("usage: scgi-lua APP.lua [options]", 1, true))
    for _, o in ipairs({ "--socket", "--socket-mode", "--workers", "--max-header-size",
      "--max-body-size", "--timeout", "--max-connections", "--grace", "--help", "--version" }) do
      assert.truthy(out:find("%s" .. o:gsub("%-", "%%-") .. "[%s,]"), "--help does not list " .. o)
    end
    local rc2, out2 = H.run("-h")
    assert.equal(0, rc2)
    assert.equal(out, out2)
  end)

  it("--version exits 0 and prints the version", function()
    local rc, out, err = H.run("--version")
    assert.equal(0, rc)
    assert.equal("", err)
    assert.truthy(out:match("^scgi%-lua %d+%.%d+%.%d+ %(Lua 5%.4[^\n]*\n$"), out)
  end)

  -- Each bad command line: exit 2 and exactly one line on stderr that says what is wrong.
  local cases = {
    { "an unknown option", app .. " --bogus 1", "unknown option '--bogus'" },
    { "an unknown option with =", app .. " --bogus=1", "unknown option '--bogus=1'" },
    { "a missing value", app .. " --workers", "option --workers needs a value" },
    { "a non-number for --workers", app .. " --workers abc", "invalid value for --workers: 'abc'" },
    { "zero workers", app .. " --workers 0", "invalid value for --workers: '0'" },
    { "a fractional --workers", app .. " --workers 1.5", "invalid value for --workers: '1.5'" },
    { "a bad size suffix", app .. " --max-body-size 12Q", "invalid value for --max-body-size: '12Q'" },
    { "a header limit under the minimum", app .. " --max-header-size 10",
      "invalid value for --max-header-size: '10'" },
    { "a negative timeout", app .. " --timeout -1", "invalid value for --timeout: '-1'" },
    { "a non-octal socket mode", app .. " --socket-mode 0999", "invalid value for --socket-mode: '0999'" },
    { "an empty socket", app .. " --socket ''", "invalid value for --socket: ''" },
    { "a port over 65535", app .. " --socket 127.0.0.1:70000", "invalid value for --socket: '127.0.0.1:70000'" },
    { "a port past 2^32", app .. " --socket 127.0.0.1:4294967297",
      "invalid value for --socket: '127.0.0.1:4294967297'" },
    { "a port that is not a number", app .. " --socket 127.0.0.1:http", "invalid value for --socket: '127.0.0.1:http'" },
    { "an IPv6 port over 65535", app .. " --socket '[::1]:65536'", "invalid value for --socket: '[::1]:65536'" },
    { "a --stats port over 65535", app .. " --stats 127.0.0.1:70000", "invalid value for --stats: '127.0.0.1:70000'" },
    { "a descriptor that is not a number", app .. " --socket fd:abc", "invalid value for --socket: 'fd:abc'" },
    { "an unknown user", app .. " --user no-such-user-x", "invalid value for --user: 'no-such-user-x' (no such user)" },
    { "an unknown group", app .. " --user nobody --group no-such-group-x",
      "invalid value for --group: 'no-such-group-x' (no such group)" },
    { "an unknown socket owner", app .. " --socket-owner no-such-user-x",
      "invalid value for --socket-owner: 'no-such-user-x' (no such user)" },
    { "an unknown socket group", app .. " --socket-owner root:no-such-group-x",
      "invalid value for --socket-owner: 'root:no-such-group-x' (no such group)" },
    { "--group without --user", app .. " --group nogroup", "--group needs --user" },
    { "no app file", "--workers 1", "no app file given" },
    { "two app files", app .. " " .. app, "more than one app file given" },
  }
  for _, c in ipairs(cases) do
    it("exits 2 with a one-line message for " .. c[1], function()
      local rc, out, err = H.run(c[2])
      assert.equal(2, rc)
      assert.equal("", out)
      assert.equal(1, #H.lines(err), "stderr: " .. err)
      assert.truthy(err:find(c[3], 1, true), "stderr: " .. err)
      assert.truthy(err:match("^scgi%-lua: "), "stderr: " .. err)
    end)
  end

  it("takes --name=value and snake_case option names", function()
    local srv = H.start("client_edges.lua", { workers = false, args = { "--workers=2", "--max_body_size=10" } })
    finally(H.cleanup)
    assert.truthy(srv.output():find("(2 workers)", 1, true))
    assert.equal(413, (H.request(srv.addr, "POST", "/echo", ("x"):rep(11))))
    assert.equal(200, (H.request(srv.addr, "POST", "/echo", ("x"):rep(10))))
    assert.equal(0, srv.stop())
  end)
end)

-- --check refuses what the start refuses: the same checks, made in one place.
describe("--check", function()
  after_each(H.cleanup)

  local files = {
    { "--log-file", "cannot open the log file /nonexistent-dir/d/log" },
    { "--access-log", "cannot open the access log /nonexistent-dir/d/log" },
    { "--pid-file", "cannot write the pid file /nonexistent-dir/d/log" },
  }
  for _, f in ipairs(files) do
    it("refuses a " .. f[1] .. " the start cannot open, as the start does (exit 1)", function()
      local dir = H.tmpdir()
      local args = app .. " --socket " .. H.quote(dir .. "/s.sock") .. " " .. f[1] .. " /nonexistent-dir/d/log"
      local rc, out, err = H.run(args .. " --check")
      assert.equal(1, rc)
      assert.equal("", out)
      assert.truthy(err:find(f[2], 1, true), err)
      assert.is_nil(err:find(": ok", 1, true), err)
      local rc2, _, err2 = H.run(args)
      assert.equal(1, rc2)
      assert.truthy(err2:find(f[2], 1, true), err2)
    end)
  end

  it("leaves no file behind when the files can be opened, and says ok", function()
    local dir = H.tmpdir()
    local rc, _, err = H.run(app .. " --check --log-file " .. H.quote(dir .. "/e.log") .. " --access-log " ..
      H.quote(dir .. "/a.log") .. " --pid-file " .. H.quote(dir .. "/x.pid"))
    assert.equal(0, rc, err)
    assert.truthy(err:find(": ok", 1, true), err)
    for _, f in ipairs({ "e.log", "a.log", "x.pid" }) do assert.is_false(H.exists(dir .. "/" .. f), f) end
  end)

  it("refuses an unknown --socket-owner user or group as the start does (exit 2)", function()
    for _, owner in ipairs({ "nosuchuser", "root:nosuchgroup" }) do
      local rc, _, err = H.run(app .. " --check --socket-owner " .. owner)
      assert.equal(2, rc)
      assert.truthy(err:find("invalid value for --socket-owner: '" .. owner .. "'", 1, true), err)
    end
  end)
end)

describe("app files that cannot be served", function()
  local dir
  setup(function() dir = H.tmpdir() end)
  teardown(function()
    H.cleanup()
    if dir then os.execute("rm -rf " .. H.quote(dir)) end
  end)

  -- Runs scgi-lua on the app with a socket in dir; it must exit 1 before creating the socket.
  local function fails(name, source, ...)
    local path = dir .. "/" .. name
    if source then H.write_file(path, source) end
    local sock = dir .. "/" .. name .. ".sock"
    local rc, out, err = H.run(H.quote(path) .. " --workers 2 --socket " .. H.quote(sock))
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find(path, 1, true), "the message does not name the file: " .. err)
    for _, want in ipairs({ ... }) do assert.truthy(err:find(want, 1, true), "stderr: " .. err) end
    assert.is_false(H.exists(sock), "a socket file was created")
    assert.is_nil(err:find("listening on", 1, true))
  end

  it("exits 1 for an app file that does not exist", function()
    fails("missing.lua", nil, "cannot load", "No such file or directory")
  end)

  it("exits 1 for a syntax error, naming the file and the line", function()
    fails("syntax.lua", "return function(headers, client)\n  local x = = 1\nend\n",
      "syntax.lua:2:")
  end)

  it("exits 1 for an app that raises while loading", function()
    fails("raises.lua", "local x = 1\nerror('load-time failure')\n", "load-time failure", "raises.lua:2:")
  end)

  it("exits 1 for an app that returns a number", function()
    fails("number.lua", "return 42\n", "must return the handler function", "returned number")
  end)

  it("exits 1 for an app that returns nothing", function()
    -- (lstate.c has a "returned nothing" branch, but pcall with one result turns nothing into nil)
    fails("nothing.lua", "local x = 1\n", "must return the handler function, but it returned nothing")
  end)

  it("exits 1 for an app that returns a table", function()
    fails("table.lua", "return { handler = function() end }\n", "returned table")
  end)
end)

describe("stopping", function()
  after_each(H.cleanup)

  -- A POST /echo whose body is still coming (4 of 100 bytes sent): its handler waits, and it has
  -- written nothing. Returns the client's socket.
  local function echo_in_flight(srv)
    local s = assert(H.connect(srv.addr, 10))
    s:send((H.encode(H.nginx_headers("POST", "/echo"), ("x"):rep(100))) .. "xxxx")
    H.sleep(0.2)
    return s
  end

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("on SIG" .. sig .. " finishes the request in flight, removes the socket and exits 0", function()
      local srv = H.start("client_edges.lua")
      local body = ("0123456789abcdef"):rep(8192) -- 128 KiB
      local half = #body // 2
      local s = assert(H.connect(srv.addr, 10))
      assert(s:send((H.encode(H.nginx_headers("POST", "/echo"), body)) .. body:sub(1, half)))
      H.sleep(0.2) -- the handler is now waiting for the rest of the body
      srv.kill(sig)
      -- the listener goes at once: the socket file is removed while the request still runs
      H.wait_for(function() return not H.exists(srv.addr) end, 5, "the socket file to be removed")
      assert.is_true(srv.alive())
      assert.is_nil((H.connect(srv.addr, 1)))
      H.sleep(0.2)
      assert.is_true(srv.alive(), "the server exited with a request in flight")
      assert(s:send(body:sub(half + 1)))
      local raw = s:receive("*a")
      s:close()
      local status, _, got = H.parse(raw)
      assert.equal(200, status)
      assert.is_true(got == body, "the echoed body differs")
      assert.equal(0, srv.wait(10))
      assert.is_false(H.exists(srv.addr))
    end)
  end

  it("refuses new TCP connections once stopping", function()
    local srv = H.start("client_edges.lua", { socket = "127.0.0.1:0", options = { grace = "2" } })
    local s = echo_in_flight(srv)
    srv.kill("TERM")
    H.sleep(0.3)
    assert.is_true(srv.alive())
    local t0 = H.now()
    local c = H.connect(srv.addr, 5)
    local answered_or_refused = c == nil
    if c then
      c:send((H.encode(H.nginx_headers("GET", "/hello"))))
      c:settimeout(1)
      local data, err, partial = c:receive("*a")
      c:close()
      answered_or_refused = (data or partial or "") ~= "" or err ~= "timeout"
    end
    s:close()
    assert.is_true(answered_or_refused and H.now() - t0 < 1,
      "a client connecting after SIGTERM was neither refused nor answered within 1 s")
  end)

  it("exits 0 at once on SIGTERM when idle", function()
    local srv = H.start("client_edges.lua", { workers = 3 })
    local t0 = H.now()
    srv.kill("TERM")
    assert.equal(0, srv.wait(10))
    assert.is_true(H.now() - t0 < 2)
    assert.is_false(H.exists(srv.addr))
  end)

  it("stops at once on a second signal, abandoning the request in flight", function()
    local srv = H.start("client_edges.lua")
    local s = echo_in_flight(srv)
    srv.kill("TERM")
    H.sleep(0.5) -- past the 250 ms in which stop signals count as one
    assert.is_true(srv.alive())
    local t0 = H.now()
    srv.kill("INT")
    assert.equal(0, srv.wait(10))
    assert.is_true(H.now() - t0 < 2)
    assert.truthy(srv.output():find("second stop signal: stopping now", 1, true))
    local data, _, partial = s:receive("*a")
    s:close()
    assert.equal(503, H.parse(data or partial)) -- it had sent nothing: the server answers
    assert.is_false(H.exists(srv.addr))
  end)

  it("abandons requests still running when --grace is over", function()
    local srv = H.start("client_edges.lua", { options = { grace = "0.5" } })
    local s = echo_in_flight(srv)
    local t0 = H.now()
    srv.kill("TERM")
    assert.equal(0, srv.wait(10))
    local took = H.now() - t0
    assert.is_true(took > 0.4 and took < 3, "exited after " .. took .. " s")
    assert.truthy(srv.output():find("grace period of 0.5 s is over", 1, true))
    local data, _, partial = s:receive("*a")
    s:close()
    assert.equal(503, H.parse(data or partial)) -- it had sent nothing: the server answers
  end)
end)
