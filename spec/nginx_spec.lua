-- spec/nginx_spec.lua: end to end, HTTP through a real nginx to scgi-lua over a unix socket.
local H = require "helper"

describe("through nginx", function()
  local srv = H.serve("client_edges.lua", { workers = 2, options = { ["max-body-size"] = "4M" } })
  local ng = H.nginx_for(srv)

  it("GET /hello", function()
    local status, headers, body = H.http(ng.port, "GET", "/hello")
    assert.equal(200, status)
    assert.equal("text/plain", headers["content-type"])
    assert.equal("Hello world\n", body)
  end)

  it("POST /echo with a 1 MiB body", function()
    local body = {}
    for i = 1, 65536 do body[i] = ("%015d\n"):format(i) end
    body = table.concat(body)
    assert.equal(1048576, #body)
    local status, headers, got = H.http(ng.port, "POST", "/echo", body,
      { ["Content-Type"] = "application/x-test" })
    assert.equal(200, status)
    assert.equal("application/x-test", headers["content-type"])
    assert.equal(#body, #got)
    assert.is_true(body == got)
  end)

  it("a 20 MiB streamed response", function()
    local status, headers, body = H.http(ng.port, "GET", "/stream?mb=20")
    assert.equal(200, status)
    assert.equal("application/octet-stream", headers["content-type"])
    assert.equal(20 * 1048576, #body)
    assert.is_nil(body:find("[^x]"))
  end)

  it("a handler error is an HTTP 500", function()
    local status, _, body = H.http(ng.port, "GET", "/error")
    assert.equal(500, status)
    assert.equal("500 Internal Server Error\n", body)
    status = H.http(ng.port, "GET", "/hello")
    assert.equal(200, status)
  end)

  it("passes the status line of respond()", function()
    local status, _, body = H.http(ng.port, "GET", "/respond?kind=iter")
    assert.equal(202, status)
    assert.equal("chunk1chunk2chunk3", body)
  end)

  it("a body over --max-body-size is an HTTP 413", function()
    local status = H.http(ng.port, "POST", "/echo", ("b"):rep(4 * 1048576 + 1))
    assert.equal(413, status)
    status = H.http(ng.port, "GET", "/hello")
    assert.equal(200, status)
  end)

  it("passes nginx's request headers to the handler", function()
    local status, _, body = H.http(ng.port, "GET", "/headers?q=1", nil, { ["X-Custom"] = "yes" })
    assert.equal(200, status)
    local got = assert(load(body))()
    assert.equal("GET", got.REQUEST_METHOD)
    assert.equal("/headers?q=1", got.REQUEST_URI)
    assert.equal("q=1", got.QUERY_STRING)
    assert.equal("yes", got.HTTP_X_CUSTOM)
    assert.equal("1", got.SCGI)
    assert.equal("0", got.CONTENT_LENGTH)
  end)
end)
