-- spec/response_spec.lua: client:redirect and client:sse. What they write is checked in plain Lua
-- on a fake client (with the real respond from core/client.lua); then end to end against the
-- real server, and Server-Sent Events through a real nginx, received one by one.
local response = require "scgi.response"
local H = require "helper"
local socket = require "socket"

-- A fake client: write and flush record into self.out and self.flushes; respond comes from
-- core/client.lua, as in the server; closed() is self.gone.
local function fake_client()
  local methods = {}
  assert(loadfile(H.root .. "/core/client.lua"))(methods)
  response.install(methods)
  function methods:write(...)
    if self.gone then return nil, "closed", 32 end
    for i = 1, select("#", ...) do self.out[#self.out + 1] = tostring((select(i, ...))) end
    return self
  end
  function methods:flush()
    if self.gone then return nil, "closed", 32 end
    self.flushes = self.flushes + 1
    return self
  end
  function methods:closed() return self.gone end
  function methods:close() self.gone = true return true end
  local c = setmetatable({ out = {}, flushes = 0, gone = false }, { __index = methods })
  return c
end

local function written(c) return table.concat(c.out) end

describe("client:redirect (unit)", function()
  it("writes 302 Found with Location and a short body by default", function()
    local c = fake_client()
    assert.equal(c, c:redirect("/next?a=1"))
    local out = written(c)
    assert.matches("^Status: 302 Found\r\n", out)
    assert.matches("\r\nLocation: /next%?a=1\r\n", "\r\n" .. out)
    assert.matches("\r\n\r\n302 Found: /next%?a=1\n$", out)
  end)

  it("takes any 3xx status", function()
    for _, st in ipairs({ 301, 303, 307, 308 }) do
      local c = fake_client()
      c:redirect("https://example.org/", st)
      assert.matches("^Status: " .. st .. " ", written(c))
    end
  end)

  it("refuses CR, LF and NUL in the url, and a status that is not 3xx", function()
    local c = fake_client()
    assert.error_matches(function() c:redirect("/a\r\nX: y") end, "bad argument #1 to 'redirect' %(CR, LF or NUL")
    assert.error_matches(function() c:redirect("/a\nb") end, "bad argument #1 to 'redirect'")
    assert.error_matches(function() c:redirect("/a\0") end, "bad argument #1 to 'redirect'")
    assert.error_matches(function() c:redirect(42) end, "bad argument #1 to 'redirect' %(string expected")
    assert.error_matches(function() c:redirect("") end, "bad argument #1 to 'redirect' %(empty url")
    assert.error_matches(function() c:redirect("/a", 200) end, "bad argument #2 to 'redirect' %(3xx status")
    assert.error_matches(function() c:redirect("/a", "302") end, "bad argument #2 to 'redirect'")
    assert.equal("", written(c))
  end)

  it("returns nil, closed for a client that went away", function()
    local c = fake_client()
    c.gone = true
    local ok, err = c:redirect("/x")
    assert.is_nil(ok)
    assert.equal("closed", err)
  end)
end)

describe("client:sse (unit)", function()
  it("writes the SSE headers and flushes them", function()
    local c = fake_client()
    local sse = assert(c:sse())
    local out = written(c)
    assert.matches("^Status: 200 OK\r\n", out)
    assert.matches("\r\nContent%-Type: text/event%-stream\r\n", "\r\n" .. out)
    assert.matches("\r\nCache%-Control: no%-cache\r\n", "\r\n" .. out)
    assert.matches("\r\nX%-Accel%-Buffering: no\r\n", "\r\n" .. out)
    assert.matches("\r\n\r\n$", out)
    assert.equal(1, c.flushes)
    assert.equal(c, sse.client)
  end)

  it("adds extra headers, replacing a default of the same name in any case", function()
    local c = fake_client()
    assert(c:sse({ ["cache-control"] = "no-store", ["Access-Control-Allow-Origin"] = "*" }))
    local out = written(c)
    assert.matches("\r\ncache%-control: no%-store\r\n", "\r\n" .. out)
    assert.is_nil(out:find("no-cache", 1, true))
    assert.matches("\r\nAccess%-Control%-Allow%-Origin: %*\r\n", "\r\n" .. out)
  end)

  it("sends events: event and id first, one data line per line, a blank line, a flush", function()
    local c = fake_client()
    local sse = assert(c:sse())
    c.out = {}
    assert.equal(sse, sse:send("hello"))
    assert.equal("data: hello\n\n", written(c))
    c.out = {}
    sse:send("a\nb\r\nc\rd\n", "update", 7)
    assert.equal("event: update\nid: 7\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n", written(c))
    c.out = {}
    sse:send(42)
    assert.equal("data: 42\n\n", written(c))
    assert.equal(4, c.flushes)
  end)

  it("sends comments and retry", function()
    local c = fake_client()
    local sse = assert(c:sse())
    c.out = {}
    sse:comment()
    sse:comment("keep\nalive")
    sse:retry(5000)
    assert.equal(":\n\n: keep\n: alive\n\nretry: 5000\n\n", written(c))
  end)

  it("raises bad argument for misuse", function()
    local c = fake_client()
    assert.error_matches(function() c:sse("x") end, "bad argument #1 to 'sse'")
    local sse = assert(c:sse())
    assert.error_matches(function() sse:send() end, "bad argument #1 to 'send' %(string expected, got no value")
    assert.error_matches(function() sse:send({}) end, "bad argument #1 to 'send'")
    assert.error_matches(function() sse:send("x", "a\nb") end, "bad argument #2 to 'send'")
    assert.error_matches(function() sse:send("x", 5) end, "bad argument #2 to 'send'")
    assert.error_matches(function() sse:send("x", nil, "1\r") end, "bad argument #3 to 'send'")
    assert.error_matches(function() sse:comment(5) end, "bad argument #1 to 'comment'")
    assert.error_matches(function() sse:retry(-1) end, "bad argument #1 to 'retry'")
  end)

  it("returns nil, closed once the client went away", function()
    local c = fake_client()
    local sse = assert(c:sse())
    c.gone = true
    local ok, err = sse:send("x")
    assert.is_nil(ok)
    assert.equal("closed", err)
    assert.is_nil((sse:comment("x")))
    assert.is_true(sse:closed())
    local c2 = fake_client()
    c2.gone = true
    ok, err = c2:sse()
    assert.is_nil(ok)
    assert.equal("closed", err)
  end)
end)

describe("redirect and sse on the real server", function()
  local srv = H.serve("response.lua", { workers = 1 })

  it("are methods of every client (scgi.client_methods)", function()
    local status, headers, body = H.request(srv.addr, "GET", "/redirect?to=%2Fthere%3Fx%3D1")
    assert.equal(302, status)
    assert.equal("/there?x=1", headers.location)
    assert.equal("302 Found: /there?x=1\n", body)
    status, headers = H.request(srv.addr, "GET", "/redirect?to=https%3A%2F%2Fexample.org%2F&status=301")
    assert.equal(301, status)
    assert.equal("https://example.org/", headers.location)
  end)

  it("raise bad argument for misuse inside a handler", function()
    local status, _, body = H.request(srv.addr, "GET", "/misuse")
    assert.equal(200, status)
    assert.matches("redirect%-crlf=[^\n]*bad argument #1 to 'redirect' %(CR, LF or NUL in the url%)", body)
    assert.matches("redirect%-nil=[^\n]*bad argument #1 to 'redirect' %(string expected, got nil%)", body)
    assert.matches("redirect%-status=[^\n]*bad argument #2 to 'redirect' %(3xx status expected, got 200%)", body)
    assert.matches("sse%-headers=[^\n]*bad argument #1 to 'sse'", body)
  end)

  it("sse sends its headers over SCGI", function()
    local dir = H.tmpdir()
    for i = 1, 2 do H.write_file(dir .. "/ack" .. i, "") end
    local status, headers, body = H.request(srv.addr, "GET", "/sse-lockstep?n=2&dir=" .. dir)
    assert.equal(200, status)
    assert.equal("text/event-stream", headers["content-type"])
    assert.equal("no-cache", headers["cache-control"])
    assert.equal("no", headers["x-accel-buffering"])
    assert.equal("lockstep", headers["x-stream"])
    assert.equal("event: tick\nid: 1\ndata: event 1\ndata: second line\n\n" ..
      "event: tick\nid: 2\ndata: event 2\ndata: second line\n\n: done\n\nevent: end\ndata: bye\n\n", body)
  end)
end)

-- Opens GET path on nginx at port and reads the HTTP head; returns the socket, status, headers.
local function open_stream(port, path)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(5)
  assert(s:send("GET " .. path .. " HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"))
  local status = tonumber(assert(s:receive("*l")):match("^HTTP/%d%.%d (%d+)"))
  local headers = {}
  while true do
    local line = assert(s:receive("*l"))
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  return s, status, headers
end

-- Reads one event (lines up to a blank line) from s: { event, id, data = {...}, comments = {...} }.
local function read_event(s)
  local ev = { data = {}, comments = {} }
  while true do
    local line, err = s:receive("*l")
    if not line then error("stream ended or stalled (" .. tostring(err) .. ") before an event") end
    if line == "" then
      if #ev.data > 0 or ev.event then return ev end
    elseif line:sub(1, 1) == ":" then
      ev.comments[#ev.comments + 1] = line:sub(3)
    else
      local field, value = line:match("^([^:]+): ?(.*)$")
      if field == "data" then ev.data[#ev.data + 1] = value else ev[field] = value end
    end
  end
end

describe("Server-Sent Events through nginx", function()
  local srv = H.serve("response.lua", { workers = 1 })
  local ng_off = H.nginx_for(srv, "scgi_buffering off;")
  local ng_on = H.nginx_for(srv) -- buffering on: X-Accel-Buffering: no must turn it off

  for _, case in ipairs({ { "with scgi_buffering off", function() return ng_off end },
    { "with buffering on, turned off by X-Accel-Buffering", function() return ng_on end } }) do
    it("arrive one by one " .. case[1], function()
      local dir = H.tmpdir()
      local s, status, headers = open_stream(case[2]().port, "/sse-lockstep?n=3&dir=" .. dir)
      assert.equal(200, status)
      assert.equal("text/event-stream", headers["content-type"])
      assert.equal("no-cache", headers["cache-control"])
      for i = 1, 3 do
        -- event i is sent only after ack<i-1>: receiving it proves the previous one arrived alone
        local ev = read_event(s)
        assert.equal("tick", ev.event)
        assert.equal(tostring(i), ev.id)
        assert.same({ "event " .. i, "second line" }, ev.data)
        H.write_file(dir .. "/ack" .. i, "")
      end
      local last = read_event(s)
      assert.equal("end", last.event)
      assert.same({ "done" }, last.comments)
      assert.same({ "bye" }, last.data)
      assert.is_nil(s:receive("*l"))
      s:close()
    end)
  end

  it("send and comment return nil, closed once the browser went away", function()
    local s, status = open_stream(ng_off.port, "/sse-until-gone")
    assert.equal(200, status)
    assert.same({ "first" }, read_event(s).data)
    s:close()
    local out = H.wait_for(function()
      local o = srv.output()
      return o:find("SSE GONE[^\n]*\n") and o -- the whole line: it may be read mid-write
    end, 8, "the handler to see the client gone")
    assert.matches("SSE GONE after %d+ comments: closed closed%(%)=true", out)
    assert.is_nil(out:find("SSE NOT GONE", 1, true))
  end)
end)

describe("examples/sse.lua through nginx", function()
  local srv = H.serve(H.root .. "/examples/sse.lua", { workers = 1 })
  local ng = H.nginx_for(srv)

  it("serves the page and a stream that goes on from Last-Event-ID", function()
    assert.matches('new EventSource("events")', (H.http_ok(ng.port, "GET", "/")), 1, true)
    local body, headers = H.http_ok(ng.port, "GET", "/events?count=3&interval=0.01", nil, { ["Last-Event-ID"] = "41" })
    assert.equal("text/event-stream", headers["content-type"])
    local ids = {}
    for id in body:gmatch("id: (%d+)\n") do ids[#ids + 1] = tonumber(id) end
    assert.same({ 42, 43, 44 }, ids)
    assert.matches("^retry: 1000\n\n", body)
    assert.matches("event: tick\nid: 42\ndata: tick 42 at %d%d:%d%d:%d%d\ndata: worker %d+\n\n", body)
  end)
end)
