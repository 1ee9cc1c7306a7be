-- spec/runtime_tls_spec.lua: TLS on cooperative sockets, on the real scgi-lua with one worker
-- (spec/apps/runtime_sockets.lua), against python3's threading HTTPS server (H.http_peer) with a
-- throwaway self-signed certificate made by openssl at spec time: LuaSec's ssl.https unchanged and
-- cooperative, its verify and cafile; sock:sslhandshake verifying against the system's store by
-- default, or --ca-file, the host name checked; a TLS connection kept in the pool.
local H = require "helper"
local socket = require "socket"

-- The status and body of a raw HTTP answer.
local function http_answer(raw)
  return tonumber(tostring(raw):match("^HTTP/1%.%d (%d+)")), tostring(raw):match("\r\n\r\n(.*)$")
end

describe("TLS with the system's trust store", function()
  local srv, peer, peer_dns, cert, dns_cert
  setup(function()
    local dir = H.tmpdir()
    local key
    cert, key = H.self_signed(dir)
    peer = H.http_peer({ cert = cert, key = key })
    -- a second server whose certificate names localhost only (no IP address)
    local dns_key
    dns_cert, dns_key = H.self_signed(dir, "DNS:localhost", "dns-only")
    peer_dns = H.http_peer({ cert = dns_cert, key = dns_key })
    srv = H.start("runtime_sockets.lua", { workers = 1 })
  end)
  teardown(function() H.stop_clean(srv) end)

  it("ssl.https.request(url): the body and 200 (LuaSec's default: verify none), not silently", function()
    local r = H.call(srv.addr, "/https", { url = ("https://127.0.0.1:%d/plain"):format(peer.port) })
    assert.equal(200, r.code)
    assert.matches("^/plain after 0 s %(answer %d+%)\n$", r.body)
    local warning = 'ssl.wrap with verify = "none" (LuaSec\'s default, and ssl.https\'s): the peer\'s certificate is not checked'
    H.wait_log(srv, 0, warning)
    H.call(srv.addr, "/https", { url = ("https://127.0.0.1:%d/plain"):format(peer.port) })
    assert.equal(1, H.count(srv.output(), warning)) -- once per worker state
  end)

  it("two 1 s HTTPS requests on one worker end together (< 1.8 s), /hello answers meanwhile", function()
    local t0 = H.now()
    local pending = {}
    for i = 1, 2 do
      pending[i] = H.start_call(srv.addr, "/https", { url = ("https://127.0.0.1:%d/tls%d?delay=1"):format(peer.port, i) })
    end
    H.sleep(0.2)
    local t1 = H.now()
    H.hello_ok(srv.addr)
    assert.is_true(H.now() - t1 < 0.3, ("/hello took %.2f s"):format(H.now() - t1))
    for i, r in ipairs(H.finish_all(pending)) do
      assert.equal(200, r.code)
      assert.matches(("^/tls%d after 1 s"):format(i), r.body)
    end
    local took = H.now() - t0
    assert.is_true(took < 1.8, ("two 1 s HTTPS requests took %.2f s"):format(took))
  end)

  it("verify = \"peer\" without a cafile checks the system's store: the self-signed certificate fails",
    function()
      local r = H.call(srv.addr, "/https", { url = ("https://localhost:%d/v"):format(peer.port), verify = "peer" })
      assert.is_nil(r.one)
      assert.matches("certificate verify failed", tostring(r.code))
      assert.matches("self%-signed certificate", tostring(r.code))
      assert.equal("", r.body)
    end)

  it("verify = \"peer\" with cafile = the certificate: https://localhost:PORT answers", function()
    local r = H.call(srv.addr, "/https", { url = ("https://localhost:%d/v"):format(peer.port), verify = "peer",
      cafile = cert })
    assert.equal(1, r.one)
    assert.equal(200, r.code)
    assert.equal("HTTP/1.1 200 OK", r.status)
    assert.matches("^/v after 0 s", r.body)
  end)

  it("verify = \"peer\" checks the host name: a certificate for localhost only fails for 127.0.0.1", function()
    local ok = H.call(srv.addr, "/https", { url = ("https://localhost:%d/n"):format(peer_dns.port),
      verify = "peer", cafile = dns_cert })
    assert.equal(200, ok.code)
    local r = H.call(srv.addr, "/https", { url = ("https://127.0.0.1:%d/n"):format(peer_dns.port),
      verify = "peer", cafile = dns_cert })
    assert.is_nil(r.one)
    assert.matches("certificate verify failed", tostring(r.code))
  end)

  it("sslhandshake verifies by default: nil, \"handshake failed: certificate verify failed: self-signed certificate\"",
    function()
      local r = H.call(srv.addr, "/sslhandshake", { port = peer.port, name = "localhost" })
      assert.same({ n = 1, 1 }, r.connect)
      assert.same({ n = 2, nil, "handshake failed: certificate verify failed: self-signed certificate" }, r.handshake)
      assert.is_nil(r.answer)
    end)

  it("sslhandshake(nil, name, false) skips verifying: a session, then HTTP over it; false first: true",
    function()
      local r = H.call(srv.addr, "/sslhandshake", { port = peer.port, name = "localhost", verify = 0 })
      assert.same({ n = 1, "session" }, r.handshake)
      local status, body = http_answer(r.answer[1])
      assert.equal(200, status)
      assert.matches("^/tls after 0 s", body)
      r = H.call(srv.addr, "/sslhandshake", { port = peer.port, verify = 0, reuse = "false" })
      assert.same({ n = 1, true }, r.handshake)
      assert.equal(200, (http_answer(r.answer[1])))
    end)

  it("a TLS connection goes to the pool and comes back with TLS up", function()
    local first = H.call(srv.addr, "/tls-pool", { port = peer.port })
    assert.equal(0, first.reused)
    assert.equal("session", first.handshake)
    assert.equal("HTTP/1.1 200 OK", first.status)
    assert.matches("^/pooled after 0 s %(answer %d+%)\n$", first.body)
    assert.same({ n = 1, 1 }, first.keep)
    local again = H.call(srv.addr, "/tls-pool", { port = peer.port })
    assert.equal(1, again.reused)
    assert.equal("session", again.handshake)
    assert.equal("HTTP/1.1 200 OK", again.status)
    local n1, n2 = tonumber(first.body:match("answer (%d+)")), tonumber(again.body:match("answer (%d+)"))
    assert.is_true(n2 > n1)
  end)
  it("a pooled unverified TLS connection is not handed to a verifying handshake, nor to LuaSec's verify = \"peer\"",
    function()
      local a = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost", verify = 0 })
      assert.same({ n = 1, true }, a.handshake)
      assert.same({ n = 1, false }, a.verified)
      assert.same({ n = 1, 1 }, a.keep)
      local b = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost" })
      assert.is_true(b.reused > 0) -- connect took the pooled connection, the handshake did not
      assert.same({ n = 2, nil, "handshake failed: certificate verify failed: self-signed certificate" }, b.handshake)
      assert.same({ n = 2, nil, "closed" }, b.reused_after)
      a = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost", verify = 0 })
      assert.same({ n = 1, 1 }, a.keep)
      local w = H.call(srv.addr, "/tls-pool-wrap", { port = peer.port })
      assert.is_true(w.reused > 0)
      assert.is_nil(w.handshake[1])
      assert.matches("certificate verify failed", w.handshake[2])
      assert.same({ n = 2, nil, "closed" }, w.verified)
    end)

  it("a pooled TLS connection goes to a handshake with the same name and verification; another name gets a new one",
    function()
      H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost", verify = 0 })
      local same = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost", verify = 0 })
      assert.is_true(same.reused > 0)
      assert.same({ n = 1, true }, same.handshake)
      assert.same({ n = 1, 1 }, same.reused_after)
      assert.equal("HTTP/1.1 200 OK", same.status)
      local other = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "other.example", verify = 0 })
      assert.is_true(other.reused > 0)
      assert.same({ n = 1, true }, other.handshake)
      assert.same({ n = 1, 0 }, other.reused_after) -- a new connection, with its own SNI
      assert.equal("HTTP/1.1 200 OK", other.status)
    end)

  -- A peer on loopback (LuaSocket, in the spec) that reads the ClientHello, then sends `reply`
  -- (nil: nothing); the route's sslhandshake fails (or times out after `timeout`). Returns the
  -- route's answer and every byte the peer got after the ClientHello's first five.
  local function failed_handshake(reply, timeout)
    local l = assert(socket.bind("127.0.0.1", 0))
    local _, port = l:getsockname()
    local finish = H.start_call(srv.addr, "/tls-fail", { port = port, timeout = timeout })
    l:settimeout(5)
    local c = assert(l:accept())
    l:close()
    c:settimeout(5)
    assert.equal(22, assert(c:receive(5)):byte(1)) -- a TLS handshake record
    if reply then c:send(reply) end
    local r = finish()
    c:settimeout(2)
    local rest, _, partial = c:receive("*a")
    c:close()
    return r, rest or partial
  end

  for _, case in ipairs({ { "fails", "HTTP/1.0 400 Bad Request\r\n\r\n", 5 }, { "times out", nil, 0.5 } }) do
    it("a handshake that " .. case[1] .. " closes the socket: nothing goes out in plaintext, nothing is pooled",
      function()
        local r, got = failed_handshake(case[2], case[3])
        assert.same({ n = 1, 1 }, r.connect)
        assert.is_nil(r.handshake[1])
        assert.matches(case[2] and "^handshake failed: " or "^timeout$", r.handshake[2])
        assert.is_nil(got:find("PASSWORD", 1, true), "sent in plaintext after the failure: " .. got:sub(-40):gsub("[^%%g ]", "."))
        assert.same({ n = 2, nil, "closed" }, r.send)
        assert.same({ n = 2, nil, "closed" }, r.receive)
        assert.same({ n = 2, nil, "closed" }, r.keep)
        assert.matches("^tcp{closed}: ", r.tostring)
      end)
  end
end)

describe("--ca-file that cannot be read", function()
  it("is refused at start (exit 2, naming the file), not at the first TLS call", function()
    local dir = H.tmpdir()
    for _, path in ipairs({ dir .. "/missing.pem", dir }) do
      local rc, _, err = H.run(H.quote(H.apps .. "/runtime_sockets.lua") .. " --ca-file " .. H.quote(path))
      assert.equal(2, rc, err)
      assert.truthy(err:find("invalid value for --ca-file: '" .. path .. "' (cannot read it: ", 1, true), err)
    end
  end)
end)

describe("TLS with --ca-file", function()
  local srv, peer
  setup(function()
    local dir = H.tmpdir()
    local cert, key = H.self_signed(dir)
    peer = H.http_peer({ cert = cert, key = key })
    srv = H.start("runtime_sockets.lua", { workers = 1, options = { ["ca-file"] = cert } })
  end)
  teardown(function() H.stop_clean(srv) end)

  it("sslhandshake's default verifying trusts the file's certificate (by name, or the address connected to)",
    function()
      local r = H.call(srv.addr, "/sslhandshake", { port = peer.port, name = "localhost" })
      assert.same({ n = 1, "session" }, r.handshake)
      assert.equal(200, (http_answer(r.answer[1])))
      r = H.call(srv.addr, "/sslhandshake", { port = peer.port, host = "localhost" })
      assert.same({ n = 1, "session" }, r.handshake)
    end)

  it("a verified connection: getpeerverification true; pooled, and handed to the same verified handshake",
    function()
      local a = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost" })
      assert.same({ n = 1, true }, a.handshake)
      assert.same({ n = 1, true }, a.verified)
      assert.same({ n = 1, 1 }, a.keep)
      local b = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost" })
      assert.is_true(b.reused > 0)
      assert.same({ n = 1, 1 }, b.reused_after)
      assert.same({ n = 1, true }, b.verified)
      local plain = H.call(srv.addr, "/tls-pool-verify", { port = peer.port, name = "localhost", verify = 0 })
      assert.same({ n = 1, 0 }, plain.reused_after) -- the verified one is not handed to it either
      assert.same({ n = 1, false }, plain.verified)
    end)

  it("verifying needs a server name: sslhandshake(nil, \"\", true) is refused and closes the socket", function()
    local r = H.call(srv.addr, "/sslhandshake", { port = peer.port, name = "" })
    assert.same({ n = 2, nil, "cannot verify the peer without a server name (give one, or do not verify)" },
      r.handshake)
  end)

  it("and still checks the name: a server name the certificate does not hold fails", function()
    local r = H.call(srv.addr, "/sslhandshake", { port = peer.port, name = "wrong.example" })
    assert.same({ n = 2, nil, "handshake failed: certificate verify failed: hostname mismatch" }, r.handshake)
  end)
end)
