-- spec/testkit_spec.lua: the test kit users test their handlers with (require "scgi.test",
-- lua/scgi/test.lua): its SCGI is what a real nginx 1.22 with Debian's scgi_params sends, its
-- answers are parsed as nginx reads them, failures say what happened with the end of the log,
-- every program it starts is stopped (stop, <close>, a forgotten app, a spec process that died),
-- and a user's spec in a folder of its own passes and fails as it should with busted, against the
-- build tree and against a tree installed by `luarocks make`.
local H = require "helper"
local T = require "scgi.test"
local socket = require "socket"
local unix = require "socket.unix"

local program = H.program

-- True while a process with that pid exists.
local function alive(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

local function gone(pid, timeout)
  return H.wait_for(function() return not alive(pid) end, timeout or 10, "pid " .. pid .. " to end")
end

-- The pairs of an SCGI request's header block, in order, as { name, value }.
local function pairs_of(bytes)
  local len, rest = bytes:match("^(%d+):(.*)$")
  local block = rest:sub(1, tonumber(len))
  assert.equal(",", rest:sub(tonumber(len) + 1, tonumber(len) + 1))
  local out = {}
  for name, value in block:gmatch("([^%z]*)%z([^%z]*)%z") do out[#out + 1] = { name, value } end
  return out, rest:sub(tonumber(len) + 2)
end

-- Reads one SCGI request (header block and body) from a connection.
local function read_scgi(c)
  local n = {}
  while true do
    local ch = assert(c:receive(1))
    if ch == ":" then break end
    n[#n + 1] = ch
  end
  local len = tonumber(table.concat(n))
  local block = assert(c:receive(len + 1))
  local head = len .. ":" .. block
  local ps = pairs_of(head)
  local body = ps[1][2] ~= "0" and assert(c:receive(tonumber(ps[1][2]))) or ""
  return head .. body
end

-- What nginx sends for the HTTP request `http` (raw bytes), captured on a unix socket it passes
-- to; the capture answers 200 so nginx's client gets an answer.
local function nginx_sends(ng, listener, http)
  local c = assert(socket.connect("127.0.0.1", ng.port))
  c:settimeout(10)
  assert(c:send(http))
  listener:settimeout(10)
  local up = assert(listener:accept())
  up:settimeout(10)
  local got = read_scgi(up)
  up:send("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok")
  up:close()
  local answer = c:receive("*a")
  c:close()
  assert.matches("^HTTP/1.1 200", answer)
  return got
end

-- The HTTP/1.1 bytes a client sends for a kit request with header lines as a list of pairs.
local function http_bytes(method, uri, lines, body)
  local t = { method .. " " .. uri .. " HTTP/1.1" }
  for _, l in ipairs(lines) do t[#t + 1] = l[1] .. ": " .. l[2] end
  if body then t[#t + 1] = "Content-Length: " .. #body end
  return table.concat(t, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- The pairs with the values nginx and the kit cannot share (the client's port, nginx's root)
-- masked.
local function masked(ps)
  for _, p in ipairs(ps) do
    if p[1] == "REMOTE_PORT" or p[1] == "DOCUMENT_ROOT" then p[2] = "*" end
  end
  return ps
end

describe("scgi.test speaks SCGI as nginx 1.22 with Debian's scgi_params", function()
  local dir, listener, ng
  setup(function()
    dir = H.tmpdir()
    listener = assert((unix.stream or unix)())
    assert(listener:bind(dir .. "/capture.sock"))
    assert(listener:listen(4))
    ng = H.nginx(dir .. "/capture.sock")
  end)
  teardown(function()
    if listener then listener:close() end
    H.cleanup()
  end)

  local cases = {
    { "a GET with a query, an encoded path to normalise, repeated and ordered headers", "GET",
      "/a%20b//c/./d/../e%3F?x=1&y=%20+z",
      { { "Host", "Example.ORG:8080" }, { "Cookie", "a=1" }, { "Accept", "text/html" }, { "Cookie", "b=2" },
        { "X-Thing", "  padded  " }, { "Connection", "close" } } },
    { "a form POST with its body", "POST", "/form?next=/home",
      { { "Host", "localhost" }, { "Content-Type", "application/x-www-form-urlencoded" },
        { "Connection", "close" } }, "name=Ada+Lovelace&topic=math" },
    { "a PUT with an empty body and a trailing slash", "PUT", "/dir/./sub/",
      { { "Host", "127.0.0.1" }, { "Connection", "close" } }, "" },
  }
  for _, case in ipairs(cases) do
    local name, method, uri, lines, body = table.unpack(case)
    it("the same pairs, in the same order: " .. name, function()
      local nginx = nginx_sends(ng, listener, http_bytes(method, uri, lines, body))
      local kit = T.encode({ method = method, uri = uri, headers = lines, body = body },
        { SERVER_NAME = "", SERVER_PORT = ng.port })
      local np, nbody = pairs_of(nginx)
      local kp, kbody = pairs_of(kit)
      assert.same(masked(np), masked(kp))
      assert.equal(nbody, kbody)
    end)
  end

  it("sends HTTPS on only for an https scheme, and lets params replace, add and remove", function()
    local ps = pairs_of(T.encode({ uri = "/", params = { REQUEST_SCHEME = "https", PATH_INFO = "/x",
      DOCUMENT_ROOT = false } }))
    local names, values = {}, {}
    for i, p in ipairs(ps) do names[i], values[p[1]] = p[1], p[2] end
    assert.same({ "CONTENT_LENGTH", "REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "CONTENT_TYPE",
      "DOCUMENT_URI", "SCGI", "SERVER_PROTOCOL", "REQUEST_SCHEME", "HTTPS", "REMOTE_ADDR", "REMOTE_PORT",
      "SERVER_PORT", "SERVER_NAME", "HTTP_HOST", "PATH_INFO" }, names)
    assert.equal("on", values.HTTPS)
    assert.equal("localhost", values.HTTP_HOST)
    for _, p in ipairs(pairs_of(T.encode({ uri = "/" }))) do assert.not_equal("HTTPS", p[1]) end
  end)

  it("refuses what nginx would not pass on, naming it", function()
    assert.error_matches(function() T.encode({ uri = "/", headers = { X_Forwarded = "1" } }) end,
      "header X_Forwarded: nginx drops header names with '_'")
    assert.error_matches(function() T.encode({ uri = "/", headers = { A = "x\r\nB: y" } }) end,
      "header A: the value must be a string without CR, LF or NUL")
    assert.error_matches(function() T.encode({ uri = "x" }) end, "the uri must begin with /")
    assert.error_matches(function() T.encode({ uri = "/../etc" }) end, "nginx answers 400 itself")
    assert.error_matches(function() T.encode({ uri = "/", body = "abc", headers = { ["Content-Length"] = 2 } }) end,
      "Content%-Length 2, but the body has 3 bytes")
  end)
end)

-- An app for the kit's own cases: each path answers a way nginx must read.
local kit_app = [[
local scgi = require "scgi"
return function(headers, client)
  local path = headers.DOCUMENT_URI
  if path == "/created" then
    client:write("Status: 201 Created\r\nX-Multi: one\r\nContent-Type: text/plain\r\nx-multi: two\r\n\r\nmade")
  elseif path == "/moved" then
    client:write("Location: /elsewhere\r\n\r\n")
  elseif path == "/nostatus" then
    client:write("Content-Type: text/plain\n\nbare LF lines")
  elseif path == "/env" then
    client:respond(200, {}, tostring(os.getenv("KIT_GREETING")) .. " " .. tostring(scgi.shared.kit ~= nil))
  elseif path == "/headers" then
    local names = {}
    for k in pairs(headers) do names[#names + 1] = k end
    table.sort(names)
    local out = {}
    for _, k in ipairs(names) do out[#out + 1] = k .. "=" .. headers[k] .. "\n" end
    client:respond(200, { ["Content-Type"] = "text/plain" }, out)
  elseif path == "/sleep" then
    scgi.sleep(5)
    client:respond(200, {}, "late")
  elseif path == "/exit" then -- os.exit only raises in a worker: the program dies another way
    os.execute("kill -KILL $PPID")
  elseif path == "/boom" then
    error("kit boom at " .. headers.REQUEST_URI)
  else
    client:respond(200, { ["Content-Type"] = "text/plain" }, client:read("a"))
  end
end
]]

describe("scgi.test against the real program", function()
  local dir, app_file
  setup(function()
    dir = H.tmpdir()
    app_file = dir .. "/kit_app.lua"
    H.write_file(app_file, kit_app)
  end)
  teardown(H.cleanup)

  it("starts, answers, reads the answer as nginx does, and stops with status 0", function()
    local app = T.start(app_file, { program = program, workers = 2, env = { KIT_GREETING = "hi" },
      args = { "--shared", "kit:1M" } })
    finally(function() app:stop() end)
    assert.matches("^unix:.*/scgi%-test%.[%w]+/scgi%.sock$", app.listen)
    assert.matches("(2 workers)", app:log(), 1, true)
    assert.equal("", H.sh_out("ps -o pid= --ppid " .. app.pid), "--no-master: no serving process under it")
    local res = app:get("/created")
    assert.equal(201, res.status)
    assert.same({ ["x-multi"] = { "one", "two" }, ["content-type"] = "text/plain" }, res.headers)
    assert.equal("made", res.body)
    res = app:get("/moved")
    assert.equal(302, res.status)
    assert.equal("/elsewhere", res.headers.location)
    res = app:get("/nostatus")
    assert.equal(200, res.status)
    assert.equal("bare LF lines", res.body)
    assert.equal("hi true", app:get("/env").body)
    res = app:post("/echo", "some\0bytes", { ["Content-Type"] = "application/octet-stream" })
    assert.equal("some\0bytes", res.body)
    local seen = app:request({ method = "DELETE", uri = "/headers?q=1",
      headers = { Cookie = { "a=1", "b=2" }, Accept = { "text/html", "text/plain" }, Host = "Example.org:81" } }).body
    assert.matches("\nHTTP_COOKIE=a=1; b=2\n", seen, 1, true)
    assert.matches("\nHTTP_ACCEPT=text/html, text/plain\n", seen, 1, true)
    assert.matches("\nHTTP_HOST=example.org\n", seen, 1, true)
    assert.matches("\nREQUEST_METHOD=DELETE\n", seen, 1, true)
    assert.matches("\nQUERY_STRING=q=1\n", seen, 1, true)
    assert.matches("^CONTENT_LENGTH=0\n", seen)
    assert.equal(0, app:stop())
    assert.is_false(alive(app.pid))
    assert.is_nil(io.open(app.dir .. "/log"), "the private directory is removed")
    -- nor is the wrapper or its watchdog left: they could signal the pid once used again
    H.wait_for(function()
      return not H.sh_out("ps -eo args"):find(app.dir, 1, true)
    end, 3, "the wrapper and the watchdog of " .. app.dir .. " to end")
    assert.matches("listening on", app:log(), 1, true) -- the log outlives the directory
  end)

  it("runs the supervisor when asked, or for --processes, and stops it with status 0", function()
    for _, opts in ipairs({ { supervisor = true }, { args = { "--processes", "2" } } }) do
      opts.program = program
      local app = T.start(app_file, opts)
      finally(function() app:stop() end)
      -- the program the kit started is the supervisor: it has serving processes
      assert.matches("%d", H.sh_out("ps -o pid= --ppid " .. app.pid))
      if opts.args then assert.matches("(2 workers in 2 processes)", app:log(), 1, true) end
      assert.equal("made", app:get("/created").body)
      assert.equal(0, app:stop())
    end
  end)

  it("a handler error is a 500 and its log line can be waited for", function()
    local app = T.start(app_file, { program = program })
    finally(function() app:stop() end)
    local res = app:get("/boom")
    assert.equal(500, res.status)
    assert.matches("kit boom at /boom", app:wait_log("kit boom at /boom"), 1, true)
    assert.error_matches(function() app:wait_log("never written", 0.1) end,
      "the log did not show \"never written\" within 0%.1 s")
  end)

  it("a start failure raises with the program's own message", function()
    local bad = dir .. "/broken.lua"
    H.write_file(bad, "return function(headers, client\n")
    local ok, err = pcall(T.start, bad, { program = program })
    assert.is_false(ok)
    assert.matches("did not start (exit status 1)", err, 1, true)
    assert.matches("broken.lua:2:", err, 1, true)
    ok, err = pcall(T.start, app_file, { program = program, args = { "--workers", "none" } })
    assert.is_false(ok)
    assert.matches("did not start (exit status 2)", err, 1, true)
    assert.matches("--workers", err, 1, true)
    ok, err = pcall(T.start, app_file, { program = dir .. "/no-such-program" })
    assert.is_false(ok)
    assert.matches("exit status 127", err, 1, true)
    assert.error_matches(function() T.start(app_file, { program = program, worker = 2 }) end,
      "scgi.test: unknown option worker")
  end)

  it("a request without an answer says so, with the end of the log; stop gives the exit status", function()
    local app = T.start(app_file, { program = program })
    finally(function() app:stop() end)
    local ok, err = pcall(app.get, app, "/exit")
    assert.is_false(ok)
    assert.matches("GET /exit: no answer: scgi-lua closed the connection without one", err, 1, true)
    assert.matches("the end of scgi-lua's log:\nscgi-lua: listening on", err, 1, true)
    assert.equal(137, app:stop())
    ok, err = pcall(app.get, app, "/")
    assert.is_false(ok)
    assert.matches("the app was stopped", err, 1, true)
  end)

  it("a request is bounded by its timeout, and a stopped program is named", function()
    local app = T.start(app_file, { program = program, timeout = 0.3 })
    finally(function() app:stop() end)
    local t0 = H.now()
    local ok, err = pcall(app.get, app, "/sleep")
    assert.is_false(ok)
    assert.matches("GET /sleep: no complete answer within 0.3 s (got 0 bytes)", err, 1, true)
    assert.is_true(H.now() - t0 < 2)
    app:signal("KILL")
    H.wait_for(function() return not app:running() end, 5, "the program to die")
    ok, err = pcall(app.get, app, "/")
    assert.is_false(ok)
    assert.matches("scgi-lua is not running (exit status 137)", err, 1, true)
    assert.equal(137, app:stop())
  end)

  it("stops a program at the end of a <close> scope, and one a spec forgot, when collected", function()
    local pid
    do
      local app <close> = T.start(app_file, { program = program })
      pid = app.pid
      assert.equal(200, app:get("/").status)
    end
    assert.is_false(alive(pid))
    local function forgotten() return T.start(app_file, { program = program }).pid end
    pid = forgotten()
    assert.is_true(alive(pid))
    collectgarbage()
    collectgarbage()
    gone(pid, 10)
  end)

  it("stops the programs of a spec process that died without closing its Lua state", function()
    local script = dir .. "/dies.lua"
    H.write_file(script, ([[
package.path = %q .. "/lua/?.lua;" .. package.path
local T = require "scgi.test"
APP = T.start(%q, { program = %q })
print(APP.pid, APP.dir)
io.stdout:flush()
os.exit(0, false) -- no lua_close: no finalizer runs
]]):format(H.sh_out("cd " .. H.quote(H.root) .. " && pwd"):gsub("%s+$", ""), app_file, program))
    local pid, app_dir = H.sh_out("lua5.4 " .. H.quote(script)):match("^(%d+)\t(%S+)")
    assert.is_string(app_dir)
    gone(tonumber(pid), 5)
    H.wait_for(function() return not H.exists(app_dir) end, 5, "the app's directory to be removed")
  end)
end)

-- The user's app and spec: the ones README's "Testing your handlers" shows.
local readme = H.read_file(H.root .. "/README.md")
local user_app = readme:match("```lua\n(%-%- app%.lua\n.-)```")
local user_spec = readme:match("```lua\n(%-%- app_spec%.lua\n.-)```")
assert(user_app and user_spec, "README.md's Testing your handlers shows app.lua and app_spec.lua")

-- Writes the user's app and spec (with the wrong expectation when `wrong`) to a fresh folder.
local function user_folder(wrong)
  local d = H.tmpdir()
  H.write_file(d .. "/app.lua", user_app)
  H.write_file(d .. "/app_spec.lua", wrong and user_spec:gsub("Hello, Ada!", "Hello, Bob!") or user_spec)
  return d
end

-- Runs busted on the folder's spec with the environment set by `env` (shell), bounded to 120 s;
-- its exit code and output.
local function busted_in(d, env)
  local out = H.sh_out("cd " .. H.quote(d) .. " && (" .. env .. " && timeout 120 busted --lua=lua5.4 -o utfTerminal " ..
    "app_spec.lua) 2>&1; echo \"rc=$?\"")
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local root = H.sh_out("cd " .. H.quote(H.root) .. " && pwd"):gsub("%s+$", "")

describe("a user's spec in a folder of its own", function()
  teardown(H.cleanup)

  local function passes_and_fails(env)
    local rc, out = busted_in(user_folder(false), env)
    assert.equal(0, rc, out)
    assert.matches("2 successes / 0 failures / 0 errors", out, 1, true)
    rc, out = busted_in(user_folder(true), env)
    assert.equal(1, rc, out)
    assert.matches("1 success / 1 failure / 0 errors", out, 1, true)
    assert.matches("Hello, Bob!", out, 1, true)
    assert.matches("Hello, Ada!", out, 1, true)
  end

  it("passes, and fails on one wrong expectation, against the build tree", function()
    local program_abs = program:sub(1, 1) == "/" and program or (root .. "/" .. program:gsub("^%./", ""))
    passes_and_fails(("unset LUA_PATH; export SCGI_LUA=%s LUA_PATH_5_4=%s"):format(H.quote(program_abs),
      H.quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;")))
  end)

  it("passes, and fails on one wrong expectation, against a tree installed by luarocks make", function()
    local d = H.tmpdir()
    local tree = d .. "/tree"
    local out = H.sh_out("cd " .. H.quote(root) .. " && mkdir " .. H.quote(d .. "/src") ..
      " && tar --exclude='./build*' --exclude=./.git --exclude=./scgi-lua -cf - . | tar -C " ..
      H.quote(d .. "/src") .. " -xf - && cd " .. H.quote(d .. "/src") .. " && timeout 600 luarocks --lua-version=5.4 " ..
      "make --tree " .. H.quote(tree) .. " scgi-lua-scm-1.rockspec 2>&1; echo \"rc=$?\"")
    assert.equal("0", out:match("rc=(%d+)%s*$"), out)
    assert.is_truthy(io.open(tree .. "/share/lua/5.4/scgi/test.lua"), "scgi/test.lua is installed")
    -- LUA_PATH_5_4, not LUA_PATH: busted's launcher runs under `lua` (lua5.1 on Debian), which
    -- reads LUA_PATH too and would load 5.4 modules
    passes_and_fails(("unset SCGI_LUA LUA_PATH LUA_CPATH LUA_CPATH_5_4; export PATH=%s:\"$PATH\" " ..
      "LUA_PATH_5_4=\"$(luarocks --lua-version=5.4 path --tree %s --lr-path);;\" && " ..
      "test \"$(command -v scgi-lua)\" = %s"):format(H.quote(tree .. "/bin"), H.quote(tree),
      H.quote(tree .. "/bin/scgi-lua")))
  end)
end)
