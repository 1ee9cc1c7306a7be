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
