-- spec/core_spec.lua: requests, the handler contract and errors, against the real scgi-lua.
local H = require "helper"

describe("scgi-lua serving the test app", function()
  local srv = H.serve("test.lua", { options = { ["max-body-size"] = "128M" } })

  it("answers hello", function()
    local status, headers, body = H.request(srv.addr, "GET", "/hello")
    assert.equal(200, status)
    assert.equal("text/plain", headers["content-type"])
    assert.equal("Hello world\n", body)
  end)

  it("passes headers through exactly", function()
    local extra = { { "EMPTY", "" }, { "HTTP_X_BYTES", "caf\xc3\xa9 \xff\x01 \t" } }
    for i = 1, 200 do extra[#extra + 1] = { "HTTP_X_H" .. i, ("v"):rep(i) } end
    local status, _, body = H.request(srv.addr, "GET", "/headers?a=1", "", extra)
    assert.equal(200, status)
    local got = assert(load(body))()
    assert.equal("", got.EMPTY)
    assert.equal("caf\xc3\xa9 \xff\x01 \t", got.HTTP_X_BYTES)
    for i = 1, 200 do assert.equal(("v"):rep(i), got["HTTP_X_H" .. i]) end
    assert.equal("0", got.CONTENT_LENGTH)
    assert.equal("1", got.SCGI)
    assert.equal("/headers?a=1", got.REQUEST_URI)
    local n = 0
    for _ in pairs(got) do n = n + 1 end
    assert.equal(#H.nginx_headers("GET", "/headers?a=1") + 2 + #extra, n)
  end)

  for _, size in ipairs({ 0, 1, 1048576, 64 * 1048576 }) do
    it("echoes a body of " .. size .. " bytes", function()
      local body = size > 0 and ("0123456789abcdef"):rep(size // 16 + 1):sub(1, size) or ""
      local status, _, got = H.request(srv.addr, "POST", "/echo", body)
      assert.equal(200, status)
      assert.equal(#body, #got)
      assert.is_true(body == got)
    end)
  end
end)

describe("client:budget", function()
  local srv = H.serve("test.lua", { options = { ["request-timeout"] = "0.5" } })

  it("gives a request more time than --request-timeout, or none at all with 0", function()
    local t0 = H.now()
    assert.equal("slept", (H.request_ok(srv.addr, "GET", "/budget?s=3&sleep=1")))
    assert.is_true(H.now() - t0 >= 0.9)
    assert.equal(200, (H.request(srv.addr, "GET", "/budget?s=0&sleep=1")))
  end)

  it("also shortens it: a budget spent answers 504", function()
    local t0 = H.now()
    assert.equal(504, (H.request(srv.addr, "GET", "/budget?s=0.2&sleep=2")))
    assert.is_true(H.now() - t0 < 1.5)
  end)

  it("raises on a bad argument", function()
    local status = H.request(srv.addr, "GET", "/budget?s=x&sleep=0")
    assert.equal(500, status)
    H.wait_for(function() return srv.output():find("bad argument #1 to 'budget'", 1, true) end, 5, "the error")
  end)
end)
