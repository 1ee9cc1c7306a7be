-- spec/examples_spec.lua: every handler example in examples/ tested with the test kit, written as
-- a user writes a spec for an app (README, "Testing your handlers"); cache.lua's upstream HTTP
-- service is played by the spec on a loopback port. The examples that need PostgreSQL, redis or
-- an HTTPS peer (blocking, offload, pg, pg_query, redis_pool, https_client) and the two that call
-- an HTTP service per request (fanout, http_client) are left to docs/services.md and their specs.
local T = require "scgi.test"

-- The build's program (spec/run.sh sets SCGI_BUILD); a user's spec leaves this out and gets
-- scgi-lua from PATH, or $SCGI_LUA.
local program = os.getenv("SCGI_LUA") or ((os.getenv("SCGI_BUILD") or "build") .. "/scgi-lua")

-- A fresh private directory for an app's files, removed at the end of the spec.
local function tmpdir()
  local p = io.popen("mktemp -d")
  local dir = p:read("l")
  p:close()
  finally(function() os.execute("rm -rf '" .. dir .. "'") end)
  return dir
end

describe("examples/hello.lua", function()
  it("says hello world", function()
    local app = T.start("examples/hello.lua", { program = program })
    finally(function() app:stop() end)
    local res = app:get("/")
    assert.equal(200, res.status)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("12", res.headers["content-length"])
    assert.equal("Hello world\n", res.body)
    assert.equal(0, app:stop())
  end)
end)

describe("examples/echo.lua", function()
  local app
  setup(function() app = T.start("examples/echo.lua", { program = program }) end)
  teardown(function() assert.equal(0, app:stop()) end)

  it("answers with the body and its type", function()
    local res = app:post("/", '{"a": 1}', { ["Content-Type"] = "application/json" })
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.equal('{"a": 1}', res.body)
  end)

  it("says text/plain when the request has no type, and takes a body of 1 MiB", function()
    local body = ("0123456789abcdef"):rep(65536)
    local res = app:post("/", body)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal(body, res.body)
  end)
end)

describe("examples/form.lua", function()
  local app
  setup(function() app = T.start("examples/form.lua", { program = program }) end)
  teardown(function() assert.equal(0, app:stop()) end)

  local form = { ["Content-Type"] = "application/x-www-form-urlencoded" }

  it("shows the form on GET", function()
    local res = app:get("/")
    assert.equal(200, res.status)
    assert.matches("^text/html", res.headers["content-type"])
    assert.matches('<form method="post"', res.body, 1, true)
  end)

  it("reads the fields, the query, the cookies (two Cookie lines) and PATH_INFO", function()
    local res = app:request({ method = "POST", uri = "/submit?from=spec",
      body = "name=Ada+Lovelace&topic=math&topic=engines&note=%3Cb%3E",
      headers = { ["Content-Type"] = form["Content-Type"], Cookie = { "session=abc", "theme=dark" } } })
    assert.equal(200, res.status)
    assert.equal("name = Ada Lovelace\nnote = <b>\ntopic = math, engines\n" ..
      "query from = spec\ncookie session = abc\ncookie theme = dark\n" ..
      "path_info = /submit\nscript_name = \n", res.body)
  end)

  it("redirects with ?redirect=1 and refuses a body that is not a form", function()
    local res = app:post("/?redirect=1", "a=1", form)
    assert.equal(303, res.status)
    assert.equal("/thanks?a=1", res.headers.location)
    res = app:post("/", "x", { ["Content-Type"] = "text/plain" })
    assert.equal(415, res.status)
  end)
end)

describe("examples/upload.lua", function()
  -- A multipart/form-data body of the parts { name, value [, filename, type] }.
  local function multipart(boundary, parts)
    local out = {}
    for _, p in ipairs(parts) do
      local disp = ('form-data; name="%s"'):format(p[1])
      if p[3] then disp = disp .. ('; filename="%s"'):format(p[3]) end
      out[#out + 1] = "--" .. boundary .. "\r\nContent-Disposition: " .. disp .. "\r\n" ..
        (p[4] and ("Content-Type: " .. p[4] .. "\r\n") or "") .. "\r\n" .. p[2] .. "\r\n"
    end
    return table.concat(out) .. "--" .. boundary .. "--\r\n"
  end

  it("shows the form on GET and saves the files of a POST under safe names", function()
    local dir = tmpdir()
    local app = T.start("examples/upload.lua", { program = program, env = { UPLOAD_DIR = dir } })
    finally(function() app:stop() end)
    assert.matches('enctype="multipart/form-data"', app:get("/").body, 1, true)
    local data = ("\0\1\2\255"):rep(50000)
    local res = app:post("/", multipart("b0undary", {
      { "comment", "two files" },
      { "files", data, "one.bin", "application/octet-stream" },
      { "files", "text file\n", "../../etc/evil name.txt", "text/plain" },
    }), { ["Content-Type"] = "multipart/form-data; boundary=b0undary" })
    assert.equal(200, res.status)
    assert.equal("comment: two files\none.bin: 200000 bytes (application/octet-stream)\n" ..
      "evil_name.txt: 10 bytes (text/plain)\n", res.body)
    local f = assert(io.open(dir .. "/one.bin", "rb"))
    assert.is_true(f:read("a") == data)
    f:close()
    res = app:post("/", "not multipart", { ["Content-Type"] = "text/plain" })
    assert.equal(400, res.status)
    assert.matches("^upload failed: ", res.body)
    assert.equal(0, app:stop())
  end)
end)

describe("examples/counter.lua", function()
  it("counts in a dictionary every worker shares", function()
    local app = T.start("examples/counter.lua", { program = program, workers = 2,
      args = { "--shared", "counters:1M" } })
    finally(function() app:stop() end)
    for i = 1, 5 do
      local res = app:get("/")
      assert.equal(200, res.status)
      assert.equal("application/json", res.headers["content-type"])
      assert.equal(('{"hits":%d}\n'):format(i), res.body)
    end
    assert.equal('{"hits":15}\n', app:post("/add?n=10", "").body)
    local res = app:post("/add?n=x", "")
    assert.equal(400, res.status)
    assert.equal('{"error":"n must be an integer"}\n', res.body)
    assert.equal('{"hits":0}\n', app:request({ method = "DELETE", uri = "/" }).body)
    res = app:request({ method = "PUT", uri = "/" })
    assert.equal(405, res.status)
    assert.equal("GET, POST, DELETE", res.headers.allow)
    assert.equal(0, app:stop())
  end)

  it("says how to start it without --shared", function()
    local app = T.start("examples/counter.lua", { program = program })
    finally(function() app:stop() end)
    local res = app:get("/")
    assert.equal(500, res.status)
    assert.equal('{"error":"start scgi-lua with --shared counters:1M"}\n', res.body)
  end)
end)

describe("examples/error.lua", function()
  it("answers 500 and logs the error with the request, then goes on serving", function()
    local app = T.start("examples/error.lua", { program = program })
    finally(function() app:stop() end)
    local res = app:get("/orders/7")
    assert.equal(500, res.status)
    assert.equal("500 Internal Server Error\n", res.body)
    local log = app:wait_log("something went wrong while handling /orders/7")
    assert.matches("GET /orders/7: handler error: [^\n]*error%.lua:%d+: something went wrong", log)
    res = app:get("/?ok")
    assert.equal(200, res.status)
    assert.equal("fine\n", res.body)
    assert.equal(0, app:stop())
  end)
end)

describe("examples/stream.lua", function()
  it("streams ten lines", function()
    local app = T.start("examples/stream.lua", { program = program })
    finally(function() app:stop() end)
    local res = app:get("/feed")
    assert.equal(200, res.status)
    local want = {}
    for i = 1, 10 do want[i] = ("line %d of 10 for /feed\n"):format(i) end
    assert.equal(table.concat(want), res.body)
  end)
end)

describe("examples/sse.lua", function()
  it("serves the page, and events that go on from Last-Event-ID", function()
    local app = T.start("examples/sse.lua", { program = program })
    finally(function() app:stop() end)
    assert.matches('new EventSource("events")', app:get("/").body, 1, true)
    local res = app:get("/events?count=3&interval=0.01", { ["Last-Event-ID"] = "41" })
    assert.equal(200, res.status)
    assert.equal("text/event-stream", res.headers["content-type"])
    assert.equal("no", res.headers["x-accel-buffering"])
    local ids = {}
    for id in res.body:gmatch("id: (%d+)\n") do ids[#ids + 1] = tonumber(id) end
    assert.same({ 42, 43, 44 }, ids)
    assert.matches("^retry: 1000\n\nevent: tick\nid: 42\ndata: tick 42 at %d%d:%d%d:%d%d\ndata: worker 0\n\n", res.body)
  end)
end)

describe("examples/slow_peer.lua", function()
  it("answers after the delay asked, counting its answers", function()
    local app = T.start("examples/slow_peer.lua", { program = program })
    finally(function() app:stop() end)
    local res = app:get("/quote?delay=0.2")
    assert.equal("/quote after 0.2 s (answer 1)\n", res.body)
    assert.equal("/quote after 0 s (answer 2)\n", app:get("/quote").body)
  end)
end)

describe("examples/cache.lua", function()
  it("answers 503 until its first fetch, then serves the value it fetched in the background", function()
    -- the upstream HTTP service, played by this spec on a loopback port
    local socket = require "socket"
    local upstream = assert(socket.bind("127.0.0.1", 0))
    finally(function() upstream:close() end)
    local _, port = upstream:getsockname()
    local app = T.start("examples/cache.lua", { program = program,
      env = { HTTP_URL = "http://127.0.0.1:" .. port, REFRESH = 60 } })
    finally(function() app:stop() end)
    -- the worker's first refresh (scgi.timer(0)) waits for the upstream, not the requests
    local res = app:get("/")
    assert.equal(503, res.status)
    assert.equal("1", res.headers["retry-after"])
    assert.equal("warming up\n", res.body)
    upstream:settimeout(10)
    local c = assert(upstream:accept())
    c:settimeout(10)
    assert.equal("GET /rates?delay=0.5 HTTP/1.1", c:receive("*l"))
    repeat local line = assert(c:receive("*l")) until line == ""
    c:send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n3\n")
    c:close()
    local deadline = socket.gettime() + 5
    repeat
      res = app:get("/")
    until res.status ~= 503 or socket.gettime() > deadline
    assert.equal(200, res.status)
    assert.matches("^3, fetched %d+ s ago by worker 0, served by worker 0\n$", res.body)
    assert.equal(0, app:stop())
    assert.matches("cache: worker 0: timer ended early (premature)", app:log(), 1, true)
  end)
end)
