-- spec/errors_spec.lua: what the server answers by itself: malformed requests (400), limits (413,
-- 431, 503), handler errors (500 or a cut-short response) and the inactivity timeout.
local H = require "helper"

-- Netstring framing of a raw header block.
local function netstring(block) return #block .. ":" .. block .. "," end

describe("malformed requests and limits", function()
  local srv = H.serve("client_edges.lua", { options = { ["max-header-size"] = "1024", ["max-body-size"] = "1000",
    timeout = "10" } })

  -- Sends bytes, expects a complete error response with this status and the parser's reason in
  -- the log, then checks that the server still serves /hello.
  local function rejects(bytes, status, phrase, reason)
    local mark = #srv.output()
    local t0 = H.now()
    local raw, err = H.raw(srv.addr, bytes, 5)
    assert.is_nil(err)
    assert.is_true(H.now() - t0 < 3, "the answer took too long")
    assert.equal(("Status: %d %s\r\nContent-Type: text/plain\r\n\r\n%d %s\n"):format(status, phrase,
      status, phrase), raw)
    H.wait_log(srv, mark, ("%d %s: %s"):format(status, phrase, reason))
    H.hello_ok(srv.addr)
  end
  local function bad(bytes, reason) rejects(bytes, 400, "Bad Request", reason) end

  local valid = "CONTENT_LENGTH\0" .. "0\0" .. "SCGI\0" .. "1\0" .. "REQUEST_URI\0/hello\0"

  it("accepts the hand-built valid request the malformed ones are made from", function()
    local status, _, body = H.parse(H.raw(srv.addr, netstring(valid), 5))
    assert.equal(200, status)
    assert.equal("Hello world\n", body)
  end)

  it("answers 400 to a netstring length with a non-digit (1x:)", function()
    bad("1x:abc,", "netstring length is not a decimal number")
  end)

  it("answers 400 to a netstring length with a leading zero (05:)", function()
    bad("05:abcde,", "netstring length has a leading zero")
  end)

  it("answers 400 to an empty netstring length", function()
    bad(":abc,", "netstring length is empty")
  end)

  it("answers 400 to a netstring that does not end with a comma", function()
    bad(#valid .. ":" .. valid .. ";", "netstring does not end with ','")
  end)

  it("answers 400 to a header name without its NUL", function()
    bad(netstring(valid .. "REQUEST_METHOD"), "header name is not NUL-terminated")
  end)

  it("answers 400 to a header value without its NUL", function()
    bad(netstring(valid .. "REQUEST_METHOD\0GET"), "header value is not NUL-terminated")
  end)

  it("answers 400 to an empty header name", function()
    bad(netstring(valid .. "\0value\0"), "header name is empty")
  end)

  it("answers 400 when CONTENT_LENGTH is not the first header", function()
    bad(H.encode({ { "SCGI", "1" }, { "CONTENT_LENGTH", "0" } }, "", true),
      "first header is not CONTENT_LENGTH")
    bad("0:,", "first header is not CONTENT_LENGTH")
  end)

  for _, v in ipairs({ "12a", "-1", "", " 1", "+1", "0x10", "1.0", "99999999999999999999" }) do
    it(("answers 400 to CONTENT_LENGTH %q"):format(v), function()
      bad(H.encode({ { "CONTENT_LENGTH", v }, { "SCGI", "1" } }, "", true),
        "CONTENT_LENGTH is not a decimal number")
    end)
  end

  it("answers 400 when the SCGI header is missing", function()
    bad(H.encode({ { "CONTENT_LENGTH", "0" }, { "REQUEST_URI", "/hello" } }, "", true),
      "SCGI header is missing")
  end)

  for _, v in ipairs({ "2", "", "11", "1 " }) do
    it(("answers 400 to SCGI %q"):format(v), function()
      bad(H.encode({ { "CONTENT_LENGTH", "0" }, { "SCGI", v } }, "", true), "SCGI header is not 1")
    end)
  end

  it("answers 400 to a repeated CONTENT_LENGTH or SCGI (request smuggling), not to other repeats", function()
    bad(H.encode({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "SCGI", "1" } }, "", true),
      "repeated SCGI header")
    bad(H.encode({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "CONTENT_LENGTH", "0" } }, "", true),
      "repeated CONTENT_LENGTH")
    bad(H.encode({ { "CONTENT_LENGTH", "5" }, { "SCGI", "1" }, { "CONTENT_LENGTH", "0" } }, "", true),
      "repeated CONTENT_LENGTH")
  end)

  it("accepts a header block of exactly --max-header-size bytes", function()
    local pad = 1024 - #valid - #"X\0\0"
    local block = valid .. "X\0" .. ("p"):rep(pad) .. "\0"
    assert.equal(1024, #block)
    local status, _, body = H.parse(H.raw(srv.addr, netstring(block), 5))
    assert.equal(200, status)
    assert.equal("Hello world\n", body)
  end)

  it("answers 431 to a header block one byte over --max-header-size", function()
    local pad = 1025 - #valid - #"X\0\0"
    local block = valid .. "X\0" .. ("p"):rep(pad) .. "\0"
    assert.equal(1025, #block)
    rejects(netstring(block), 431, "Request Header Fields Too Large",
      "header block is larger than the limit")
  end)

  it("answers 431 as soon as the length digits alone exceed the limit", function()
    -- only the digits are sent: the server must not wait for a colon or the block
    local s = assert(H.connect(srv.addr, 5))
    local mark = #srv.output()
    local t0 = H.now()
    s:send("99999")
    local first = s:receive("*l")
    assert.is_true(H.now() - t0 < 2)
    assert.equal("Status: 431 Request Header Fields Too Large", first)
    s:close()
    H.wait_log(srv, mark, "431 Request Header Fields Too Large: header block is larger than the limit")
    H.hello_ok(srv.addr)
  end)

  it("answers 413 from CONTENT_LENGTH over --max-body-size, before the handler runs", function()
    local mark = #srv.output()
    local head = H.encode(H.nginx_headers("POST", "/mark?413"), ("b"):rep(1001))
    -- only the header block is sent: the answer must not wait for the body
    local s = assert(H.connect(srv.addr, 5))
    s:send(head)
    local first = s:receive("*l")
    assert.equal("Status: 413 Content Too Large", first)
    s:close()
    local log = H.wait_log(srv, mark, "/mark?413: 413 Content Too Large: body of 1001 bytes is over the limit of 1000")
    assert.is_nil(log:find("MARK handler ran", 1, true), "the handler ran for a 413 request")
    -- a body of exactly the limit is accepted and reaches the handler
    local body = ("0123456789"):rep(100)
    local status, _, got = H.request(srv.addr, "POST", "/echo", body)
    assert.equal(200, status)
    assert.equal(body, got)
    -- a 19-digit CONTENT_LENGTH is a number, far over the limit: 413, not 400
    rejects(H.encode({ { "CONTENT_LENGTH", "9999999999999999999" }, { "SCGI", "1" } }, "", true),
      413, "Content Too Large", "body of 9999999999999999999 bytes is over the limit of 1000")
  end)

  it("answers 413 with the whole over-limit body sent, and keeps serving", function()
    local body = ("z"):rep(200000)
    local raw, err = H.raw(srv.addr, table.concat({ H.encode(H.nginx_headers("POST", "/echo"), body) }), 10)
    assert.is_nil(err)
    assert.equal(413, (H.parse(raw)))
    H.hello_ok(srv.addr)
  end)

  it("gives no answer to a connection closed before the header block is complete", function()
    local mark = #srv.output()
    local s = assert(H.connect(srv.addr, 5))
    s:send("60:CONTENT_LENGTH\0" .. "0\0SC")
    s:shutdown("send")
    local data, err, partial = s:receive("*a")
    s:close()
    assert.equal("", data or partial)
    assert.is_true(data ~= nil or err == "closed")
    H.wait_log(srv, mark, "connection closed before the header block was complete")
    -- a connection that sends nothing at all is fine too
    s = assert(H.connect(srv.addr, 5))
    s:close()
    H.hello_ok(srv.addr)
  end)
end)

describe("the default limits", function()
  local srv = H.serve("client_edges.lua")

  -- Sends only the header block and reads the first line of the answer.
  local function status_line(head)
    local s = assert(H.connect(srv.addr, 5))
    s:send(head)
    local l = s:receive("*l")
    s:close()
    return l
  end

  it("are 16M for the body", function()
    local cl = function(n) return H.encode({ { "CONTENT_LENGTH", tostring(n) }, { "SCGI", "1" },
      { "REQUEST_URI", "/mark?default" } }, "", true) end
    assert.equal("Status: 413 Content Too Large", status_line(cl(16 * 1048576 + 1)))
    assert.equal("Status: 200 OK", status_line(cl(16 * 1048576)))
  end)

  it("are 64K for the header block", function()
    local base = "CONTENT_LENGTH\0" .. "0\0" .. "SCGI\0" .. "1\0" .. "REQUEST_URI\0/hello\0"
    local function block(n) return base .. "X\0" .. ("p"):rep(n - #base - 3) .. "\0" end
    assert.equal("Status: 200 OK", status_line(netstring(block(65536))))
    assert.equal("Status: 431 Request Header Fields Too Large", status_line(netstring(block(65537))))
  end)
end)

describe("--max-body-size 0", function()
  local srv = H.serve("client_edges.lua", { options = { ["max-body-size"] = "0" } })

  it("means no limit: a huge CONTENT_LENGTH reaches the handler", function()
    local mark = #srv.output()
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode({ { "CONTENT_LENGTH", "1000000000000" }, { "SCGI", "1" },
      { "REQUEST_URI", "/mark?unlimited" } }, "", true)))
    assert.equal("Status: 200 OK", s:receive("*l"))
    s:close()
    H.wait_log(srv, mark, "MARK handler ran for /mark?unlimited")
  end)
end)

describe("handler errors", function()
  local srv = H.serve("client_edges.lua")

  it("answers 500 to a handler error and logs message, traceback, method and URI", function()
    local log = H.get_500(srv, "/error?x=1", "GET /error?x=1: handler error: ")
    assert.truthy(log:find("test.lua:%d+: boom from the handler"))
    assert.truthy(log:find("stack traceback:", 1, true))
    H.hello_ok(srv.addr)
  end)

  it("closes the connection, without a 500, when the handler fails after output was sent", function()
    local mark = #srv.output()
    local raw, err = H.raw(srv.addr, table.concat({ H.encode(H.nginx_headers("GET", "/error-after-flush")) }), 5)
    assert.is_nil(err)
    assert.equal("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial", raw)
    local log = H.wait_log(srv, mark, "GET /error-after-flush: handler error: ")
    assert.truthy(log:find("boom after flushing", 1, true))
    H.hello_ok(srv.addr)
  end)

  it("cuts a large response short when the handler fails part way", function()
    -- /big-then-error writes 1 MiB (most of it reaches the socket while the client reads) and
    -- raises: the client gets a 200 whose body stops early, never a 500 appended to it
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("GET", "/big-then-error"))))
    local data, err, partial = s:receive("*a")
    s:close()
    local raw = data or partial
    assert.is_nil(err)
    local status, _, body = H.parse(raw)
    assert.equal(200, status)
    assert.is_true(#body > 1048576 - 65536 and #body <= 1048576, "got " .. #body .. " body bytes")
    assert.is_nil(body:find("[^y]"), "the body holds more than the handler's bytes")
    H.hello_ok(srv.addr)
  end)

  it("discards output that was only buffered and answers a clean 500", function()
    -- /error-after-write writes "partial" into the client's buffer (nothing reaches the socket)
    -- and raises: the server answers 500 instead of a cut-short 200.
    H.get_500(srv, "/error-after-write")
    H.hello_ok(srv.addr)
  end)

  it("answers 500 and logs a line when the handler writes nothing", function()
    H.get_500(srv, "/nothing",
      "GET /nothing: 500 Internal Server Error: the handler returned without writing a response")
    H.hello_ok(srv.addr)
  end)

  it("answers 500 when the handler yields outside of the client's calls", function()
    local mark = #srv.output()
    local status = H.request(srv.addr, "GET", "/yield")
    assert.equal(500, status)
    H.wait_log(srv, mark, "the handler yielded outside of an scgi call")
    H.hello_ok(srv.addr)
  end)
end)

describe("--max-connections", function()
  local srv = H.serve("client_edges.lua", { options = { ["max-connections"] = "2" } })

  it("answers 503 over the limit per worker, and serves again once connections close", function()
    local held = {}
    for i = 1, 2 do
      held[i] = assert(H.connect(srv.addr, 5))
      held[i]:send("50:") -- an incomplete header block keeps the connection open
    end
    H.sleep(0.2)
    local mark = #srv.output()
    local raw, err = H.raw(srv.addr, table.concat({ H.encode(H.nginx_headers("GET", "/hello")) }), 5)
    assert.is_nil(err)
    assert.equal("Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\n503 Service Unavailable\n", raw)
    H.wait_log(srv, mark, "503 Service Unavailable: over --max-connections")
    for _, s in ipairs(held) do s:close() end
    H.wait_for(function() return H.request(srv.addr, "GET", "/hello") == 200 end, 5,
      "the server to serve again")
    -- two at once are within the limit
    local a = assert(H.connect(srv.addr, 5))
    a:send("50:")
    H.sleep(0.1)
    H.hello_ok(srv.addr)
    a:close()
  end)
end)

describe("--timeout", function()
  local srv = H.serve("client_edges.lua", { options = { timeout = "0.3" } })

  -- Sends bytes and then nothing: the server closes the connection after the 0.3 s, without an
  -- answer, logs `reason` and goes on serving. Returns what the read got: data, error.
  local function closed_idle(bytes, reason)
    local mark = #srv.output()
    local s = assert(H.connect(srv.addr, 5))
    s:send(bytes)
    local t0 = H.now()
    local data, err, partial = s:receive("*a")
    local took = H.now() - t0
    s:close()
    assert.equal("", data or partial)
    assert.is_true(took > 0.2 and took < 3, "closed after " .. took .. " s")
    H.wait_log(srv, mark, reason)
    H.hello_ok(srv.addr)
    return data, err
  end

  it("closes a connection idle while sending the header block, and logs it", function()
    local data, err = closed_idle("40:CONTENT_LENGTH\0",
      "no progress for 0.3 s while reading the header block; closing")
    assert.is_true(data ~= nil or err == "closed")
  end)

  it("closes a connection idle while sending the body, and logs it", function()
    closed_idle(H.encode(H.nginx_headers("POST", "/echo"), ("x"):rep(100)) .. ("x"):rep(10),
      "POST /echo: no progress for 0.3 s while reading the body; closing")
  end)

  it("closes a connection whose client stops reading the response, and logs it", function()
    local mark = #srv.output()
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("GET", "/stream?mb=100"))))
    H.wait_log(srv, mark, "GET /stream?mb=100: no progress for 0.3 s while writing; closing")
    H.hello_ok(srv.addr) -- the worker was not blocked meanwhile
    local n = 0
    while true do
      local d, err, p = s:receive(65536)
      n = n + #(d or p)
      if not d then
        assert.equal("closed", err)
        break
      end
    end
    s:close()
    assert.is_true(n > 0 and n < 100 * 1048576, "received " .. n .. " bytes")
  end)

  it("does not cut off a slow client that keeps making progress", function()
    local body = "0123456789"
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("POST", "/echo"), body)))
    for i = 1, #body do -- 10 bytes over about 1 s, each gap under the 0.3 s timeout
      H.sleep(0.1)
      s:send(body:sub(i, i))
    end
    local raw = s:receive("*a")
    s:close()
    local status, _, got = H.parse(raw)
    assert.equal(200, status)
    assert.equal(body, got)
  end)

  it("answers 431 to more headers than the server takes (1024)", function()
    local hs = {}
    for i = 1, 1100 do hs[i] = { "H" .. i, "" } end
    local mark = #srv.output()
    local raw = H.raw(srv.addr, table.concat({ H.encode(hs) }), 5)
    assert.equal(431, (H.parse(raw)))
    H.wait_log(srv, mark, "431 Request Header Fields Too Large: too many headers")
    H.hello_ok(srv.addr)
  end)
end)
