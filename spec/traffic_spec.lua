-- spec/traffic_spec.lua: what real clients send through Debian's real nginx: repeated header
-- lines, many of them, HEAD, uploads; and repeated SCGI names sent directly.
local H = require "helper"

local function headers_of(body) return assert(load(body))() end

describe("repeated request headers", function()
  local srv = H.serve("client_edges.lua", { workers = 2 })
  local ng = H.nginx_for(srv)

  local function get_headers(lines)
    local status, _, body = H.http_raw(ng.port, "GET /headers HTTP/1.0\r\nHost: localhost\r\n" ..
      table.concat(lines, "\r\n") .. "\r\n\r\n")
    assert.equal(200, status, body)
    return headers_of(body)
  end

  it("joins two Cookie lines with '; ' (curl -H 'Cookie: a=1' -H 'Cookie: b=2')", function()
    local got = get_headers({ "Cookie: a=1", "Cookie: b=2" })
    assert.equal("a=1; b=2", got.HTTP_COOKIE)
  end)

  it("joins repeated X-Forwarded-For lines with ', ' in arrival order", function()
    local got = get_headers({ "X-Forwarded-For: foo", "X-Forwarded-For: bar", "X-Forwarded-For: bazz" })
    assert.equal("foo, bar, bazz", got.HTTP_X_FORWARDED_FOR)
  end)

  it("keeps the other headers intact next to the repeated ones", function()
    local got = get_headers({ "Accept: text/html", "X-A: 1", "Accept: text/plain", "X-B: 2" })
    assert.equal("text/html, text/plain", got.HTTP_ACCEPT)
    assert.equal("1", got.HTTP_X_A)
    assert.equal("2", got.HTTP_X_B)
    assert.equal("GET", got.REQUEST_METHOD)
    assert.equal("1", got.SCGI)
  end)

  it("serves 200 repeated ignorable header lines", function()
    local lines = {}
    for i = 1, 200 do lines[i] = "X-Pad: " .. i end
    local got = get_headers(lines)
    local want = {}
    for i = 1, 200 do want[i] = tostring(i) end
    assert.equal(table.concat(want, ", "), got.HTTP_X_PAD)
  end)

  it("merges a repeated name sent directly over SCGI, an empty value included", function()
    local head = H.encode(H.nginx_headers("GET", "/headers", {
      { "HTTP_COOKIE", "a=1" }, { "HTTP_X", "" }, { "HTTP_COOKIE", "b=2" }, { "HTTP_X", "y" } }))
    local status, _, body = H.parse(H.raw(srv.addr, head))
    assert.equal(200, status)
    local got = headers_of(body)
    assert.equal("a=1; b=2", got.HTTP_COOKIE)
    assert.equal(", y", got.HTTP_X)
  end)

  it("still answers 400 to a repeated CONTENT_LENGTH sent directly", function()
    local raw = H.raw(srv.addr, H.encode({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" },
      { "CONTENT_LENGTH", "4" } }, "", true) .. "abcd")
    assert.equal(400, (H.parse(raw)))
  end)
end)

describe("what nginx does with the answers", function()
  local stats
  local srv = H.serve("traffic.lua", function()
    local dir = H.tmpdir()
    stats = dir .. "/stats.sock"
    return { dir = dir, workers = 2, args = { "--access-log", "-", "--stats", stats } }
  end)
  local ng = H.nginx_for(srv)
  local unbuffered = H.nginx_for(srv, "scgi_request_buffering off;")

  local function access_line(pattern)
    return H.wait_for(function()
      for line in srv.output():gmatch("[^\n]+") do
        if line:find(pattern) then return line end
      end
    end, 5, "the access log line " .. pattern)
  end

  it("HEAD reaches the handler as HEAD; nginx sends the head without the body", function()
    local status, headers, body = H.http_raw(ng.port, "HEAD /hello HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert.equal(200, status)
    assert.equal("text/plain", headers["content-type"])
    assert.equal("", body)
    assert.truthy(access_line(" HEAD /hello 200 "))
  end)

  it("a Location without Status is a 302 from nginx, and 302 in the access log", function()
    local status, headers = H.http_raw(ng.port, "GET /location HTTP/1.0\r\nHost: localhost\r\n\r\n")
    assert.equal(302, status)
    assert.equal("/elsewhere", headers.location)
    assert.truthy(access_line(" GET /location 302 "))
  end)

  it("a response without a CGI head: nginx answers 502, scgi-lua logs a warning and counts an error",
    function()
      local mark = #srv.output()
      local status = H.http_raw(ng.port, "GET /nohead HTTP/1.0\r\nHost: localhost\r\n\r\n")
      assert.equal(502, status)
      local out = H.wait_for(function()
        local o = srv.output():sub(mark + 1)
        return o:find("does not start with a CGI head", 1, true) and o
      end, 5, "the warning")
      assert.truthy(out:find("GET /nohead: the response does not start with a CGI head (a header " ..
        "name holds a space or a control character)", 1, true), out)
      assert.truthy(access_line(" GET /nohead 502 "))
      local total = assert(select(3, H.get_stats(stats))):match('"total":(%b{})')
      assert.equal("1", total:match('"bad_heads":(%d+)'))
      assert.equal("1", total:match('"errors":(%d+)'))
    end)

  it("an upload nginx buffers: CONTENT_LENGTH is the body's length", function()
    local status, _, body = H.http(ng.port, "POST", "/lengths", "foobar")
    assert.equal(200, status)
    assert.equal("6 6 foobar", body)
  end)

  it("a chunked upload: nginx reads it whole first, so CONTENT_LENGTH is its decoded length", function()
    local status, _, body = H.http_raw(unbuffered.port, "POST /lengths HTTP/1.1\r\nHost: localhost\r\n" ..
      "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nfoo\r\n3\r\nbar\r\n0\r\n\r\n")
    assert.equal(200, status)
    assert.truthy(body:find("6 nil foobar", 1, true), body)
  end)

  it("an unbuffered upload whose body comes late: nginx 1.22 sends a partial CONTENT_LENGTH, " ..
    "and scgi-lua warns", function()
    local mark = #srv.output()
    local socket = require "socket"
    local s = assert(socket.connect("127.0.0.1", unbuffered.port))
    s:settimeout(10)
    s:send("POST /lengths HTTP/1.0\r\nHost: localhost\r\nContent-Length: 6\r\n\r\n")
    H.sleep(0.3)
    s:send("foobar")
    local raw = s:receive("*a")
    s:close()
    assert.truthy(raw:find("^HTTP/1%.%d 200"), raw)
    local out = H.wait_for(function()
      local o = srv.output():sub(mark + 1)
      return o:find("but the client sent Content-Length", 1, true) and o
    end, 5, "the warning")
    assert.truthy(out:find("POST /lengths: CONTENT_LENGTH 0 but the client sent Content-Length 6", 1,
      true), out)
  end)
end)

describe("over --max-connections", function()
  after_each(H.cleanup)

  it("every refused connection gets its 503, also past twice the limit", function()
    local srv = H.start("traffic.lua", { options = { ["max-connections"] = "4" } })
    local idle = {}
    for i = 1, 4 do idle[i] = assert(H.connect(srv.addr, 10)) end
    H.sleep(0.2)
    local extra = {}
    for i = 1, 8 do
      extra[i] = assert(H.connect(srv.addr, 10))
      extra[i]:send((H.encode(H.nginx_headers("GET", "/hello"))))
    end
    for i = 1, 8 do
      local data, _, partial = extra[i]:receive("*a")
      extra[i]:close()
      assert.equal(503, (H.parse(data or partial)), "connection " .. i .. ": " .. tostring(data or partial))
    end
    for _, s in ipairs(idle) do s:close() end
    H.wait_for(function() return H.request(srv.addr, "GET", "/hello") == 200 end, 5, "serving again")
    assert.equal(0, srv.stop())
  end)
end)

describe("the environment", function()
  after_each(H.cleanup)

  it("LUA_PATH with ';;' keeps Lua's default path, as lua5.4 does", function()
    local srv = H.start("traffic.lua", { env = "LUA_PATH='/nonexistent/?.lua;;'" })
    local status, _, body = H.request(srv.addr, "GET", "/paths")
    assert.equal(200, status)
    local path, loaded = body:match("^(.*)\n(%a+)$")
    assert.truthy(path:find("/nonexistent/?.lua;", 1, true), path)
    assert.truthy(path:find("/usr/share/lua/5.4/?.lua", 1, true), path)
    assert.is_nil(path:find(";;", 1, true), path)
    assert.equal("true", loaded)
    assert.equal(0, srv.stop())
  end)

  it("--reload-on-change watches a module first required by a handler", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/lazy_mod.lua", "return 'first'")
    local srv = H.start("traffic.lua", { args = { "--reload-on-change" } })
    local _, _, body = H.request(srv.addr, "GET", "/lazy?dir=" .. dir)
    assert.equal("first", body)
    H.sleep(1.1) -- a new modification time
    H.write_file(dir .. "/lazy_mod.lua", "return 'second'")
    H.wait_for(function()
      local _, _, b = H.request(srv.addr, "GET", "/lazy?dir=" .. dir)
      return b == "second"
    end, 10, "the reload after the module changed")
    H.wait_log(srv, 0, dir .. "/lazy_mod.lua changed")
    assert.equal(0, srv.stop())
  end)
end)
