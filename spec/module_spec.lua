-- spec/module_spec.lua: require "scgi" in a stock lua5.4: handle_requests with a function (runs in
-- the calling state) and with an app path (a pool of worker states), SIGTERM returning from it,
-- and bad arguments and options.
local H = require "helper"

local root = H.root
local build = H.build

-- The sanitizer runtime the module links to (when built by make asan), or nil.
local function asan_runtime()
  local ldd = H.sh_out("ldd " .. H.quote(build .. "/scgi/core.so") .. " 2>/dev/null")
  return ldd:match("(/%S*libasan%.so[%.%d]*)")
end

-- The environment a stock lua5.4 needs to find the module in this checkout, and the sanitizer
-- runtime when the module was built with ASan (spec/run.sh build-asan). Leak checking is left to
-- the one spec about it (leaks = true), so that one known leak does not fail every spec here.
local function lua_env(leaks)
  local env = ("LUA_CPATH=%s LUA_PATH=%s"):format(H.quote(build .. "/?.so;;"),
    H.quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"))
  local asan = asan_runtime()
  if asan then
    env = env .. " LD_PRELOAD=" .. H.quote(asan)
    if not leaks then
      env = env .. " ASAN_OPTIONS=" .. H.quote((os.getenv("ASAN_OPTIONS") or "") .. ":detect_leaks=0")
    end
  end
  return env
end

-- Starts `lua5.4 SCRIPT` (source given) like helper's H.start does scgi-lua, so H.cleanup stops
-- it; waits for the server's "listening on" line.
local function start_script(source, opts)
  opts = opts or {}
  local dir = opts.dir or H.tmpdir()
  local script = dir .. "/script.lua"
  H.write_file(script, source)
  local saved = H.program
  H.program = "lua5.4"
  local ok, proc = pcall(H.start, script, { dir = dir, socket = false, workers = false,
    env = lua_env(), expect_fail = opts.expect_fail })
  H.program = saved
  assert(ok, proc)
  return proc
end

-- Runs a short lua5.4 script to its end (bounded by timeout 10); returns exit code and output.
local function run_script(source, leaks)
  local dir = H.tmpdir()
  H.write_file(dir .. "/script.lua", source)
  local p = io.popen(("cd %s && %s timeout 10 lua5.4 %s 2>&1 </dev/null; echo \"rc=$?\""):format(
    H.quote(root), lua_env(leaks), H.quote(dir .. "/script.lua")))
  local out = p:read("a")
  p:close()
  os.execute("rm -rf " .. H.quote(dir))
  local rc = tonumber(out:match("rc=(%d+)\n$"))
  return rc, out:gsub("rc=%d+\n$", "")
end

describe("require 'scgi' in a stock lua5.4", function()
  after_each(H.cleanup)

  it("serves a function handler in the calling state, with one worker", function()
    local dir = H.tmpdir()
    local sock = dir .. "/fn.sock"
    local srv = start_script(([[
local scgi = require "scgi"
assert(type(scgi.version) == "string")
local count = 0
FROM_SCRIPT = "global of the calling state"
local ok = scgi.handle_requests(function(headers, client)
  count = count + 1
  if headers.REQUEST_URI == "/fail" then error("handler failure " .. count) end
  if headers.REQUEST_URI == "/echo" then
    local body = client:read("a")
    return client:respond(200, { ["Content-Type"] = "text/plain" }, body)
  end
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("%%s count=%%d %%s"):format(headers.REQUEST_URI, count, FROM_SCRIPT))
end, { socket = %q, workers = 4, max_body_size = "2M" })
print(("handle_requests returned %%s after %%d requests"):format(tostring(ok), count))
]]):format(sock), { dir = dir })
    assert.equal("unix:" .. sock, srv.listen)
    assert.truthy(srv.output():find("(1 worker)", 1, true), "a function handler runs on one worker")
    local status, _, body = H.request(sock, "GET", "/a")
    assert.equal(200, status)
    assert.equal("/a count=1 global of the calling state", body)
    status, _, body = H.request(sock, "GET", "/b")
    assert.equal(200, status)
    assert.equal("/b count=2 global of the calling state", body)
    -- the handler's coroutines wait for the body like an app's
    local big = ("m"):rep(1048576)
    status, _, body = H.request(sock, "POST", "/echo", big)
    assert.equal(200, status)
    assert.is_true(body == big)
    -- options given in snake_case apply
    status = H.request(sock, "POST", "/echo", ("m"):rep(2 * 1048576 + 1))
    assert.equal(413, status)
    -- an error in the handler is a 500 and the next request is fine
    status = H.request(sock, "GET", "/fail")
    assert.equal(500, status)
    H.wait_log_match(srv, 0, "GET /fail: handler error: [^\n]*handler failure 4")
    status, _, body = H.request(sock, "GET", "/c")
    assert.equal(200, status)
    assert.equal("/c count=5 global of the calling state", body)
    -- SIGTERM: handle_requests returns true and the script goes on
    assert.equal(0, srv.stop())
    assert.truthy(srv.output():find("handle_requests returned true after 5 requests", 1, true), srv.output())
    assert.is_false(H.exists(sock))
  end)

  it("serves an app path from a pool of worker states", function()
    local dir = H.tmpdir()
    local sock = dir .. "/pool.sock"
    local srv = start_script(([[
local scgi = require "scgi"
local ok = scgi.handle_requests(%q, { socket = %q, workers = 2 })
print("pool returned " .. tostring(ok))
]]):format(H.apps .. "/test.lua", sock), { dir = dir })
    assert.equal("unix:" .. sock, srv.listen)
    assert.truthy(srv.output():find("(2 workers)", 1, true))
    -- several connections at once, so both workers take some
    local socks = {}
    for i = 1, 20 do
      socks[i] = assert(H.connect(sock, 10))
      local head, b = H.encode(H.nginx_headers("POST", "/echo"), "pool " .. i)
      socks[i]:send(head .. b)
    end
    for i, s in ipairs(socks) do
      local status, _, body = H.parse(s:receive("*a"))
      s:close()
      assert.equal(200, status)
      assert.equal("pool " .. i, body)
    end
    local status, _, body = H.request(sock, "GET", "/hello")
    assert.equal(200, status)
    assert.equal("Hello world\n", body)
    assert.equal(0, srv.stop())
    assert.truthy(srv.output():find("pool returned true", 1, true), srv.output())
    assert.is_false(H.exists(sock))
  end)

  it("can serve again after handle_requests returned", function()
    local dir = H.tmpdir()
    local sock = dir .. "/again.sock"
    local srv = start_script(([[
local scgi = require "scgi"
for round = 1, 2 do
  local ok = scgi.handle_requests(function(_, client)
    client:respond(200, {}, "round " .. round)
  end, { socket = %q })
  io.stderr:write("round ", round, " returned ", tostring(ok), "\n")
end
]]):format(sock), { dir = dir })
    local _, _, body = H.request(sock, "GET", "/")
    assert.equal("round 1", body)
    srv.kill("TERM")
    H.wait_for(function()
      local _, n = srv.output():gsub("listening on", "")
      return n == 2
    end, 10, "the second round to listen")
    H.wait_log(srv, 0, "round 1 returned true")
    _, _, body = H.request(sock, "GET", "/")
    assert.equal("round 2", body)
    assert.equal(0, srv.stop())
    H.wait_log(srv, 0, "round 2 returned true")
  end)

  it("leaves no leak in the Lua process after handle_requests (ASan build)", function()
    if not asan_runtime() then
      pending("the leak check needs the module built with ASan (SCGI_BUILD=build-asan)")
      return
    end
    local rc, out = run_script([[
local scgi = require "scgi"
local ok, err = pcall(scgi.handle_requests, "/nonexistent/app.lua", { socket = "/nonexistent/x.sock" })
print("ok=" .. tostring(ok))
]], true)
    assert.truthy(out:find("ok=false", 1, true), out)
    assert.is_nil(out:find("LeakSanitizer", 1, true), out)
    assert.equal(0, rc, out)
  end)

  -- Each call must raise (not serve): the script prints the error and exits.
  local bad = {
    { "an unknown option", [[scgi.handle_requests(function() end, { socket = SOCK, bogus = 1 })]],
      "unknown option 'bogus'" },
    { "a bad --workers value", [[scgi.handle_requests(function() end, { socket = SOCK, workers = "abc" })]],
      "invalid value for --workers: 'abc'" },
    { "a bad size", [[scgi.handle_requests(function() end, { socket = SOCK, max_body_size = "12Q" })]],
      "invalid value for --max-body-size: '12Q'" },
    { "a table as a value", [[scgi.handle_requests(function() end, { socket = SOCK, timeout = {} })]],
      "option 'timeout' must be a string or a number" },
    { "a handler that is not a function or path", [[scgi.handle_requests(42, { socket = SOCK })]],
      "bad argument #1 to 'handle_requests' (function or path expected, got number)" },
    { "options that are not a table", [[scgi.handle_requests(function() end, "opts")]],
      "bad argument #2 to 'handle_requests' (table expected, got string)" },
    { "an app path that does not exist", [[scgi.handle_requests("/nonexistent/app.lua", { socket = SOCK })]],
      "scgi-lua: cannot load /nonexistent/app.lua" },
    { "a socket path that is a regular file", [[
        local f = io.open(SOCK, "w") f:write("keep") f:close()
        scgi.handle_requests(function() end, { socket = SOCK })]], "exists and is not a socket" },
  }
  for _, c in ipairs(bad) do
    it("raises a clear error for " .. c[1], function()
      local dir = H.tmpdir()
      local sock = dir .. "/bad.sock"
      local rc, out = run_script(([[
local scgi = require "scgi"
SOCK = %q
local ok, err = pcall(function() %s end)
print("ok=" .. tostring(ok))
print("err=" .. tostring(err))
]]):format(sock, c[2]))
      assert.equal(0, rc, out)
      assert.truthy(out:find("ok=false\n", 1, true), out)
      assert.truthy(out:find("err=[^\n]*" .. c[3]:gsub("%p", "%%%0")), out)
      assert.is_nil(out:find("listening on", 1, true), out)
      if c[1]:find("regular file") then
        assert.equal("keep", H.read_file(sock))
      else
        assert.is_false(H.exists(sock))
      end
      os.execute("rm -rf " .. H.quote(dir))
    end)
  end

  it("scgi.multipart and scgi.wsapi are their modules, callable: no name shadows another", function()
    local rc, out = run_script([[
local scgi = require "scgi"
local multipart, wsapi = require "scgi.multipart", require "scgi.wsapi"
print(scgi.multipart == multipart, scgi.wsapi == wsapi, scgi.multipart_reader == multipart.reader)
print(type(scgi.multipart.reader), type(scgi.wsapi.wrap_app), type(scgi.wsapi(function() end)))
local body = "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nv\r\n--b--\r\n"
local client = { read = function(_, n) local s = body:sub(1, n) body = body:sub(n + 1) return s ~= "" and s or nil end }
local got = {}
print(scgi.multipart({ CONTENT_TYPE = "multipart/form-data; boundary=b", CONTENT_LENGTH = "49" }, client,
  { on_data = function(d) got[#got + 1] = d end }), table.concat(got))
]])
    assert.equal(0, rc, out)
    assert.equal("true\ttrue\ttrue\nfunction\tfunction\tfunction\n1\tv\n", out)
  end)
end)
