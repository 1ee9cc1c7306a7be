-- spec/traffic_spec.lua: what real clients send through Debian's real nginx: repeated header
-- lines, many of them, HEAD, uploads; and repeated SCGI names sent directly.
local H = require "helper"

local function headers_of(body) return assert(load(body))() end

describe("repeated request headers", function()
  local srv, ng
  setup(function()
    srv = H.start("more.lua", { workers = 2 })
    ng = H.nginx(srv.addr)
  end)
  teardown(function()
    if ng then ng.stop() end
    if srv then assert.equal(0, srv.stop()) end
    H.cleanup()
  end)

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
