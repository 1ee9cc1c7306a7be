-- spec/stats_spec.lua: the stats endpoint (--stats, JSON figures counted exactly, a unix socket of
-- mode 0600) and --status, which prints its table.
local H = require "helper"

describe("the stats endpoint", function()
  after_each(H.cleanup)

  local function version()
    return H.sh_out(H.quote(H.program) .. " --version"):match("^scgi%-lua (%S+)")
  end

  it("counts requests, errors, connections and bytes exactly", function()
    local srv = H.start("ops_app.lua", { workers = 2, options = { stats = "127.0.0.1:0" } })
    local addr = H.stats_addr(srv)
    assert.truthy(addr:match("^127%.0%.0%.1:%d+$"), addr)
    local sent, received = 0, 0
    local function go(bytes, want)
      local raw = H.raw(srv.addr, bytes, 10)
      assert.equal(want, (H.parse(raw)))
      sent, received = sent + #bytes, received + #raw
    end
    local function req(uri)
      local head, b = H.encode(H.nginx_headers("GET", uri))
      return head .. b
    end
    for _ = 1, 36 do go(req("/ok"), 200) end
    go(req("/slow?ms=300"), 200)
    for _ = 1, 3 do go(req("/error"), 500) end
    go("nonsense\r\n\r\n", 400)
    go("12:CONTENT_LENGTH,", 400)
    local empty = assert(H.connect(srv.addr, 5)) -- a connection that carries no request
    empty:close()
    local st
    H.wait_for(function()
      local status, ctype, body = H.get_stats(addr)
      assert.equal(200, status)
      assert.equal("application/json", ctype)
      st = H.json_decode(body)
      -- a request's bytes are counted as its connection closes, which the client may see first
      return st.total.requests == 42 and st.total.connections == 43 and
        st.total.bytes_out == received and st.total.bytes_in == sent
    end, 5, "the figures of 42 requests on 43 connections")
    assert.equal(version(), st.version)
    assert.equal(srv.pid, st.pid)
    assert.is_true(type(st.uptime) == "number" and st.uptime > 0 and st.uptime < 60)
    local t = st.total
    assert.equal(42, t.requests)
    assert.equal(3, t.errors)
    assert.equal(43, t.connections)
    assert.equal(0, t.active_connections)
    assert.equal(0, t.active_requests)
    assert.equal(received, t.bytes_out)
    assert.equal(sent, t.bytes_in)
    assert.is_true(t.lua_memory > 0)
    local buckets, n = 0, 0
    for k, v in pairs(t.latency_ms) do
      buckets, n = buckets + 1, n + v
      assert.truthy(k == "inf" or tonumber(k), k)
    end
    assert.equal(14, buckets)
    assert.equal(42, n)
    -- the 300 ms request lies over the 200 ms bucket (the others may too on a busy machine)
    local slow = 0
    for k, v in pairs(t.latency_ms) do
      if k == "inf" or tonumber(k) > 200 then slow = slow + v end
    end
    assert.is_true(slow >= 1, "no request in the buckets over 200 ms")
    -- the workers add up to the total
    assert.equal(2, #st.workers)
    local sum = {}
    for i, w in ipairs(st.workers) do
      assert.equal(i - 1, w.id)
      for _, k in ipairs({ "requests", "errors", "active_connections", "active_requests", "connections", "bytes_in",
        "bytes_out", "lua_memory" }) do
        sum[k] = (sum[k] or 0) + w[k]
      end
    end
    for k, v in pairs(sum) do assert.equal(t[k], v, k) end
    -- anything but GET: 405
    local s = assert(H.connect(addr, 5))
    s:send("POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    assert.truthy(s:receive("*a"):match("^HTTP/1%.0 405 "))
    s:close()
    assert.equal(0, srv.stop())
  end)

  it("serves on a unix socket (mode 0600) and --status prints the table", function()
    local dir = H.tmpdir()
    local path = dir .. "/stats.sock"
    local srv = H.start("ops_app.lua", { dir = dir, workers = 3, options = { stats = path } })
    assert.equal("unix:" .. path, H.stats_addr(srv))
    assert.equal("600", (H.sh_out("stat -c %a " .. H.quote(path)):gsub("\n", "")))
    for _ = 1, 5 do H.scgi_get(srv.addr, "/ok") end
    H.scgi_get(srv.addr, "/error")
    H.wait_for(function() return H.json_decode(select(3, H.get_stats(path))).total.requests == 6 end, 5, "6 requests")
    for _, a in ipairs({ path, "unix:" .. path }) do
      local rc, out, err = H.run("--status " .. H.quote(a))
      assert.equal(0, rc, err)
      assert.equal("", err)
      local l = H.lines(out)
      assert.truthy(l[1]:find(("scgi-lua %s, pid %d, up "):format(version(), srv.pid), 1, true), out)
      assert.truthy(l[1]:find(", 3 workers$"), out)
      assert.truthy(l[2]:match("^worker%s+requests%s+errors%s+active%s+connections%s+bytes in%s+bytes out"), out)
      local reqs, errs = 0, 0
      for i = 0, 2 do
        local r, e = l[3 + i]:match("^" .. i .. "%s+(%d+)%s+(%d+)%s")
        assert.truthy(r, out)
        reqs, errs = reqs + r, errs + e
      end
      assert.equal(6, reqs)
      assert.equal(1, errs)
      assert.truthy(l[6]:match("^total%s+6%s+1%s+0%s+6%s"), out)
    end
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
  end)

  it("--status exits 1 with a message when nothing or something else answers", function()
    local port = H.free_port()
    local rc, out, err = H.run("--status 127.0.0.1:" .. port)
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("cannot reach the stats endpoint 127.0.0.1:" .. port .. ": Connection refused", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = H.run("--status " .. H.quote(dir .. "/none.sock"))
    assert.equal(1, rc)
    assert.truthy(err:find("cannot reach the stats endpoint " .. dir .. "/none.sock", 1, true), err)
    -- an SCGI socket is not a stats endpoint
    local srv = H.start("ops_app.lua", { dir = dir })
    rc, _, err = H.run("--status " .. H.quote(srv.addr))
    assert.equal(1, rc)
    assert.truthy(err:find("did not answer like a scgi-lua stats endpoint", 1, true), err)
    assert.equal(0, srv.stop())
  end)
end)
