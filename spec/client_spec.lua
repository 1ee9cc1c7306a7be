-- spec/client_spec.lua: the client object handlers get (respond, write, read, flush, close, misuse),
-- many connections at once, a slow reader of a large response, and a body the handler ignores.
local H = require "helper"

-- The head lines of a raw response, in order.
local function head_lines(raw)
  local top = assert(raw:match("^(.-)\r\n\r\n"), "no end of head in " .. ("%q"):format(raw))
  local t = {}
  for l in (top .. "\r\n"):gmatch("(.-)\r\n") do t[#t + 1] = l end
  return t
end

-- Reads a response's head from the socket s up to its empty line; returns the lines, the empty
-- one last.
local function receive_head(s)
  local head = {}
  repeat
    local l = assert(s:receive("*l"))
    head[#head + 1] = l
  until l == ""
  return head
end

-- Decodes the /read route's "len:piece," list.
local function pieces(s)
  local out, i = {}, 1
  while i <= #s do
    local len, colon = s:match("^(%d+)():", i)
    assert(len, "bad /read answer at " .. i)
    len = tonumber(len)
    out[#out + 1] = s:sub(colon + 1, colon + len)
    assert(s:sub(colon + len + 1, colon + len + 1) == ",", "bad /read answer after a piece")
    i = colon + len + 2
  end
  return out
end

describe("the client object", function()
  local srv = H.serve("client_edges.lua", { options = { ["max-body-size"] = "64M" } })

  describe("respond", function()
    it("turns a number status into its reason phrase", function()
      local _, _, body, raw = H.request(srv.addr, "GET", "/respond")
      local head = head_lines(raw)
      assert.equal("Status: 404 Not Found", head[1])
      assert.same({ "Status: 404 Not Found", "Content-Type: text/plain" }, head)
      assert.equal("not here", body)
    end)

    it("repeats a header for each value of a list, and concatenates a list body", function()
      local _, _, body, raw = H.request(srv.addr, "GET", "/respond?kind=list")
      local head = head_lines(raw)
      assert.equal("Status: 201 Created", head[1])
      local xa = {}
      for _, l in ipairs(head) do
        local v = l:match("^X%-A: (.*)$")
        if v then xa[#xa + 1] = v end
      end
      assert.same({ "1", "2" }, xa)
      assert.equal(4, #head)
      assert.equal("abc", body)
    end)

    it("sends what an iterator body yields, with a string status as given", function()
      local _, _, body, raw = H.request(srv.addr, "GET", "/respond?kind=iter")
      local head = head_lines(raw)
      assert.same({ "Status: 202 Accepted", "Content-Type: text/plain" }, head)
      assert.equal("chunk1chunk2chunk3", body)
    end)

    it("defaults to 200 OK and writes number header values", function()
      local _, _, body, raw = H.request(srv.addr, "GET", "/respond-default")
      assert.same({ "Status: 200 OK", "X-N: 42" }, head_lines(raw))
      assert.equal("n=1", body)
    end)

    it("refuses header names and values that would break the head", function()
      local status, _, body = H.request(srv.addr, "GET", "/respond-bad-header")
      assert.equal(200, status)
      local r = setmetatable({}, { __index = function(_, k)
        return body:match("%f[^\n%z]" .. k:gsub("%-", "%%-") .. "=([^\n]*)") or ""
      end })
      assert.truthy(body:find("name%-crlf=[^\n]*bad argument #2 to 'respond' %(invalid header name"))
      assert.truthy(r["name-colon"]:find("bad argument #2 to 'respond' (invalid header name 'X:Y')", 1, true))
      assert.truthy(r["name-empty"]:find("bad argument #2 to 'respond' (invalid header name '')", 1, true))
      assert.truthy(r["value-lf"]:find("bad argument #2 to 'respond' (header 'X-Ok' has CR or LF in its value)", 1, true))
      assert.truthy(r["status-crlf"]:find("bad argument #1 to 'respond'", 1, true))
      assert.truthy(r["status-range"]:find("bad argument #1 to 'respond' (status out of range)", 1, true))
      assert.truthy(r["body-bad"]:find("bad argument #3 to 'respond' (string, table or function expected, got boolean)", 1, true))
    end)

    it("takes an integral float status; refuses a status that is not three digits", function()
      local _, _, body, raw = H.request(srv.addr, "GET", "/respond-float")
      assert.same({ "Status: 201 Created", "Content-Type: text/plain" }, head_lines(raw))
      assert.equal("float", body)
      local status, _, text = H.request(srv.addr, "GET", "/respond-bad-header")
      assert.equal(200, status)
      local function line(k) return text:match("%f[^\n%z]" .. k:gsub("%-", "%%-") .. "=([^\n]*)") or "" end
      assert.truthy(line("status-float"):find("bad argument #1 to 'respond' (status out of range)", 1, true), line("status-float"))
      assert.truthy(line("status-huge"):find("bad argument #1 to 'respond' (status out of range)", 1, true), line("status-huge"))
      for _, k in ipairs({ "status-letters", "status-short", "status-long" }) do
        assert.truthy(line(k):find("bad argument #1 to 'respond' (status must start with three digits", 1, true), line(k))
      end
    end)

    it("reports a bad header at the handler's line, like the other argument errors", function()
      local _, _, body = H.request(srv.addr, "GET", "/respond-bad-header")
      local line = body:match("name%-colon=([^\n]*)")
      assert.truthy(line:find("client_edges.lua:%d+: bad argument"), line)
    end)

    it("explains why a string status is refused", function()
      local _, _, body = H.request(srv.addr, "GET", "/respond-bad-header")
      local line = body:match("status%-crlf=([^\n]*)")
      assert.is_nil(line:find("integer or string expected, got string", 1, true), line)
    end)
  end)

  it("raises 'bad argument' errors on misuse", function()
    local status, _, body = H.request(srv.addr, "GET", "/misuse")
    assert.equal(200, status)
    local r = {}
    for k, v in (body .. "\n"):gmatch("([%w%-]+)=([^\n]*)\n") do r[k] = v end
    assert.truthy(r["write-table"]:find("test.lua:%d+: bad argument #1 to 'write' %(string expected, got table%)"),
      r["write-table"])
    assert.truthy(r["read-bad"]:find("test.lua:%d+: bad argument #1 to 'read' %(invalid format%)"), r["read-bad"])
    assert.truthy(r["read-neg"]:find("test.lua:%d+: bad argument #1 to 'read' %(negative count%)"), r["read-neg"])
    assert.truthy(r["respond-bad"]:find(
      "test.lua:%d+: bad argument #1 to 'respond' %(number or string expected, got table%)"), r["respond-bad"])
    assert.equal("scgi.client (GET /misuse)", r["tostring"])
  end)

  it("raises 'attempt to use a closed scgi client' for a client used after its request", function()
    assert.equal("kept", (H.request_ok(srv.addr, "GET", "/keep")))
    local status, _, body = H.request(srv.addr, "GET", "/use-kept")
    assert.equal(200, status)
    assert.truthy(body:find("^false [^\n]*test.lua:%d+: attempt to use a closed scgi client scgi%.client %(closed%)$"),
      body)
  end)

  it("ends the response at close(); later writes raise", function()
    local mark = #srv.output()
    assert.equal("closed early", (H.request_ok(srv.addr, "GET", "/close-early")))
    H.hello_ok(srv.addr) -- the route's own assertion would be logged as a handler error
    assert.is_nil(H.log_since(srv, mark):find("handler error", 1, true), H.log_since(srv, mark))
  end)

  it("closes the client held by a <close> variable", function()
    assert.equal("to-be-closed", (H.request_ok(srv.addr, "GET", "/tbc")))
    local mark = #srv.output()
    local status, _, body = H.request(srv.addr, "GET", "/tbc-block")
    assert.equal(200, status)
    assert.equal("tbc-block", body)
    local log = H.wait_log(srv, mark, "TBC after block:")
    assert.truthy(log:find("TBC after block: closed=true write=false err=[^\n]*attempt to use a closed scgi client str=scgi%.client %(closed%)\n"),
      log)
  end)

  it("answers 500 and logs a line when the handler closes the client without writing", function()
    H.get_500(srv, "/close-nothing",
      "GET /close-nothing: 500 Internal Server Error: the client was closed before a response was written")
  end)

  it("answers a client that half-closes its side after sending the request", function()
    for _, req in ipairs({ { "GET", "/hello", "", "Hello world\n" }, { "POST", "/echo", "half", "half" } }) do
      local s = assert(H.connect(srv.addr, 5))
      local head, b = H.encode(H.nginx_headers(req[1], req[2]), req[3])
      s:send(head .. b)
      s:shutdown("send")
      local raw = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw)
      assert.equal(200, status)
      assert.equal(req[4], body)
    end
  end)

  it("still delivers the response after client:closed() on a half-closed connection", function()
    -- the single worker spins for 0.3 s, so the request and the half-close are both queued
    -- before the server looks at the connection
    local busy = H.send_get(srv.addr, "/spin?ms=300", 5)
    H.sleep(0.05)
    local s = H.send_get(srv.addr, "/closed-check", 5)
    s:shutdown("send")
    assert.equal(200, (H.parse(busy:receive("*a"))))
    busy:close()
    local data, _, partial = s:receive("*a")
    s:close()
    local status, _, body = H.parse(data or partial)
    assert.equal(200, status)
    assert.truthy(body and body:find("after$"), body)
  end)

  it("client:closed() is false while the client is connected", function()
    assert.equal("closed()=false;after", (H.request_ok(srv.addr, "GET", "/closed-check")))
  end)

  it("flush() returns the client and sends what is buffered", function()
    assert.equal("flushed", (H.request_ok(srv.addr, "GET", "/flush")))
    -- /flush-then-read flushes, then waits for the body: its first bytes must arrive before the
    -- body is sent
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("POST", "/flush-then-read"), "the body")))
    assert.equal("Status: 200 OK", receive_head(s)[1])
    assert.equal("first;", s:receive(6))
    s:send("the body")
    local rest = s:receive("*a")
    s:close()
    assert.equal("got:the body", rest)
  end)

  it("raises when read must wait where the handler cannot yield, and reads fine afterwards", function()
    local s = assert(H.connect(srv.addr, 5))
    s:send((H.encode(H.nginx_headers("POST", "/read-in-gsub"), "abcde")))
    H.sleep(0.1) -- the body comes later, so the read inside string.gsub has to wait
    s:send("abcde")
    local raw = s:receive("*a")
    s:close()
    local status, _, body = H.parse(raw)
    assert.equal(200, status)
    assert.truthy(body:find("^pcall=false err=[^\n]*C[%- ]call[^\n]* body=abcde$"), body)
    H.hello_ok(srv.addr)
  end)

  describe("read", function()
    local body = "one\ntwo\n\nlast"
    local cases = {
      { "l", body, { "one", "two", "", "last" } },
      { "L", body, { "one\n", "two\n", "\n", "last" } },
      { "3", body, { "one", "\ntw", "o\n\n", "las", "t" } },
      { "a", body, { body } },
      { "l", "a\nb\n", { "a", "b" } },
      { "L", "a\nb\n", { "a\n", "b\n" } },
      { "l", "", {} },
      { "5", "", {} },
      { "a", "", { "" } },
      { "100", body, { body } },
    }
    for _, c in ipairs(cases) do
      it(("reads %q with format %s"):format(c[2], c[1]), function()
        local status, _, got = H.request(srv.addr, "POST", "/read?fmt=" .. c[1], c[2])
        assert.equal(200, status)
        assert.same(c[3], pieces(got))
      end)
    end

    it("reads long lines that span many socket reads", function()
      local lines = {}
      for i = 1, 3000 do lines[i] = ("%05d"):format(i) .. ("-"):rep(95) end
      lines[#lines + 1] = ("z"):rep(200000) -- a last line without newline, longer than a buffer
      local b = table.concat(lines, "\n")
      local status, _, got = H.request(srv.addr, "POST", "/read?fmt=L", b)
      assert.equal(200, status)
      local p = pieces(got)
      assert.equal(3001, #p)
      assert.equal("00001" .. ("-"):rep(95) .. "\n", p[1])
      assert.equal(("z"):rep(200000), p[3001])
      assert.is_true(table.concat(p) == b)
    end)

    it("reads a large body in counted pieces", function()
      local b = ("0123456789abcdef"):rep(65536) .. "tail!" -- 1 MiB + 5
      local status, _, got = H.request(srv.addr, "POST", "/read?fmt=65536", b)
      assert.equal(200, status)
      local p = pieces(got)
      assert.equal(17, #p)
      assert.equal("tail!", p[17])
      assert.is_true(table.concat(p) == b)
    end)
  end)

  it("lets a handler run child processes and get their exit status", function()
    assert.equal("all 20 good", (H.request_ok(srv.addr, "GET", "/spawn?n=20")))
  end)

  it("answers 500 to a non-string error object and logs it", function()
    H.get_500(srv, "/error-table", "GET /error-table: handler error: (error object is a table value)")
    H.hello_ok(srv.addr)
  end)
end)

describe("many clients and slow clients on one worker", function()
  local srv = H.serve("client_edges.lua", { options = { ["max-body-size"] = "64M" } })

  it("serves 200 concurrent connections", function()
    local socks = {}
    for i = 1, 200 do socks[i] = assert(H.connect(srv.addr, 20)) end
    for i, s in ipairs(socks) do
      local head, body = H.encode(H.nginx_headers("POST", "/echo"), "request " .. i)
      assert(s:send(head .. body))
    end
    local good = 0
    for i, s in ipairs(socks) do
      local raw = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw)
      if status == 200 and body == "request " .. i then good = good + 1 end
    end
    assert.equal(200, good)
  end)

  it("keeps serving others promptly while a slow client reads a 100 MiB response", function()
    local total = 100 * 1048576
    local s = H.send_get(srv.addr, "/stream?mb=100", 20)
    assert.equal("Status: 200 OK", receive_head(s)[1])
    local got, bad = 0, false
    local worst = 0
    for _ = 1, 20 do
      local d = assert(s:receive(16384)) -- a little at a time, with pauses
      got = got + #d
      bad = bad or d:find("[^x]") ~= nil
      local t0 = H.now()
      H.hello_ok(srv.addr)
      worst = math.max(worst, H.now() - t0)
      H.sleep(0.02)
    end
    assert.is_true(worst < 1, "a /hello round trip took " .. worst .. " s")
    while got < total do
      local d, err, partial = s:receive(math.min(1048576, total - got))
      d = d or partial
      got = got + #d
      bad = bad or d:find("[^x]") ~= nil
      if err then break end
    end
    local tail, err, partial = s:receive("*a")
    s:close()
    assert.equal(total, got)
    assert.equal("", tail or partial) -- then a clean end (LuaSocket says "closed" for *a at EOF)
    assert.is_true(tail ~= nil or err == "closed", err)
    assert.is_false(bad, "the body holds bytes other than x")
  end)

  it("keeps serving after a client disconnects in the middle of a large response", function()
    local mark = #srv.output()
    local s = H.send_get(srv.addr, "/stream?mb=50", 20)
    assert(s:receive(100000))
    s:close()
    H.hello_ok(srv.addr)
    assert.is_nil(H.log_since(srv, mark):find("handler error", 1, true))
  end)

  it("sends a large string written in one call intact", function()
    local status, _, body = H.request(srv.addr, "GET", "/big-string?mb=8")
    assert.equal(200, status)
    assert.equal(8 * 1048576, #body)
    assert.is_nil(body:find("[^y]"))
  end)

  it("delivers the response intact when the handler does not read a 10 MiB body (unix)", function()
    local body = ("u"):rep(10 * 1048576)
    local head = H.encode(H.nginx_headers("POST", "/noread"), body)
    local raw, err = H.raw(srv.addr, head .. body, 20)
    assert.is_nil(err)
    local status, _, got = H.parse(raw)
    assert.equal(200, status)
    assert.equal("did not read\n", got)
    H.hello_ok(srv.addr)
  end)
end)

describe("a body the handler does not read, over TCP", function()
  local srv = H.serve("client_edges.lua", { socket = "127.0.0.1:0", options = { ["max-body-size"] = "64M" } })

  it("delivers the response intact, with no reset", function()
    local body = ("t"):rep(10 * 1048576)
    local head = H.encode(H.nginx_headers("POST", "/noread"), body)
    for _ = 1, 3 do
      local raw, err = H.raw(srv.addr, head .. body, 20)
      assert.is_nil(err)
      local status, _, got = H.parse(raw)
      assert.equal(200, status)
      assert.equal("did not read\n", got)
    end
    H.hello_ok(srv.addr)
  end)

  it("delivers the response intact when the client sends the body after reading it", function()
    local body = ("t"):rep(10 * 1048576)
    local s = assert(H.connect(srv.addr, 20))
    s:send((H.encode(H.nginx_headers("POST", "/noread"), body)))
    assert.equal("Status: 200 OK", receive_head(s)[1])
    assert.equal("did not read\n", s:receive(13))
    assert.equal(#body, (s:send(body)))
    local rest, err, partial = s:receive("*a")
    s:close()
    assert.equal("", rest or partial) -- a clean end, not a reset
    assert.is_true(rest ~= nil or err == "closed", err)
  end)
end)
