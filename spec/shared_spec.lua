-- spec/shared_spec.lua: scgi.shared dictionaries, shared by every worker of the real server.
local H = require "helper"

local function call(srv, uri)
  local status, _, body = H.request(srv.addr, "GET", uri)
  assert.equal(200, status, body)
  return table.pack(assert(load(body))())
end

describe("scgi.shared", function()
  local srv = H.serve("shared.lua", { workers = 2, args = { "--shared counters:1M", "--shared cache:64K" } })

  it("keeps strings with any byte, integers, floats and booleans as they are", function()
    local r = call(srv, "/types")
    assert.same({ "text\0bytes", "integer", 42, "float", 1.5, "boolean", false, n = 7 }, r)
  end)

  it("add refuses an existing key and replace a missing one (ok, err, forcible)", function()
    local r = call(srv, "/add")
    assert.same({ true, nil, false, false, "exists", false, false, "not found", 1, n = 9 }, r)
  end)

  it("incr answers not found without init, not a number on a string, and adds floats", function()
    local r = call(srv, "/incr-errors")
    assert.same({ nil, "not found", nil, "not a number", 1.5, n = 5 }, r)
  end)

  it("forgets a value after its ttl", function()
    assert.same({ "short-lived", n = 1 }, call(srv, "/ttl?set=0.3"))
    H.sleep(0.5)
    assert.same({ nil, n = 1 }, call(srv, "/ttl"))
  end)

  it("refuses a value over the size cap with a clear error and keeps the old value", function()
    local r = call(srv, "/too-big")
    assert.is_false(r[1])
    assert.matches("value does not fit: it needs %d+ bytes and scgi.shared.cache holds 65536", r[2])
    assert.equal("kept", r[3])
    assert.is_false(r[4])
  end)

  it("evicts the least recently used entries to stay under its size, and says so (forcible)", function()
    assert.same({ true, true, true, true, true, true, true, n = 7 }, call(srv, "/lru"))
  end)

  it("does not count entries past their ttl as forced out", function()
    assert.same({ 0, n = 1 }, call(srv, "/forcible"))
  end)

  it("raises bad argument errors and has no dictionaries that were not declared", function()
    local r = call(srv, "/misuse")
    assert.is_false(r[1])
    assert.matches("bad argument #2 to 'set'", r[2])
    assert.is_false(r[3])
    assert.matches("empty key", r[4])
    assert.is_true(r[5])
    assert.equal("scgi.shared.cache", r[6])
  end)

  it("counts exactly when every worker increments one counter 100,000 times in all", function()
    local before = call(srv, "/get?key=hits")[1] or 0
    -- 40 concurrent requests of 2,500 increments each, spread over both workers
    local socks = {}
    for i = 1, 40 do
      local head, body = H.encode(H.nginx_headers("GET", "/incr?n=2500"), "")
      socks[i] = assert(H.connect(srv.addr, 60))
      socks[i]:send(head .. body)
    end
    for i = 1, 40 do
      local status = H.parse(socks[i]:receive("*a"))
      socks[i]:close()
      assert.equal(200, status)
    end
    assert.equal(before + 100000, call(srv, "/get?key=hits")[1])
  end)
end)

describe("dict:get under --memory-limit", function()
  after_each(H.cleanup)

  -- The serving process's resident memory, in KiB.
  local function rss(srv)
    local status = H.read_file("/proc/" .. H.serving_pid(srv) .. "/status")
    return tonumber(status:match("VmRSS:%s*(%d+)"))
  end

  it("frees its copy of the value when pushing it runs out of memory: 30 gets of 8 MiB leak nothing", function()
    local srv = H.start("shared.lua", { workers = 1,
      args = { "--shared counters:1M", "--shared cache:64K", "--shared big:32M", "--memory-limit 24" } })
    local r = call(srv, "/get-no-memory?mb=8&fill=17")
    assert.is_false(r[1])
    assert.matches("not enough memory", r[2])
    local before = rss(srv)
    for _ = 1, 30 do
      r = call(srv, "/get-no-memory?mb=8&fill=17")
      assert.is_false(r[1])
    end
    if H.crash_signal() == 6 then
      -- ASan keeps freed memory in quarantine: LeakSanitizer, at the exit, tells instead
      assert.equal(0, srv.stop())
      assert.is_nil(srv.output():find("LeakSanitizer", 1, true), srv.output())
    else
      local grown = (rss(srv) - before) / 1024
      assert.is_true(grown < 64, ("the serving process grew by %.0f MiB"):format(grown))
    end
  end)
end)

describe("--shared", function()
  after_each(H.cleanup)

  it("rejects a malformed declaration with exit status 2", function()
    for _, bad in ipairs({ "nosize", "bad-name:1M", "x:12", "x:1Q" }) do
      local p = io.popen(H.quote(H.program) .. " " .. H.quote(H.apps .. "/shared.lua") ..
        " --shared " .. H.quote(bad) .. " 2>&1; echo \"rc=$?\"")
      local out = p:read("a")
      p:close()
      assert.matches("invalid value for %-%-shared", out)
      assert.matches("rc=2", out)
    end
  end)
end)

describe("examples/counter.lua through nginx", function()
  teardown(H.cleanup)

  it("counts GETs and POSTs from every worker in one shared counter", function()
    local srv = H.start(H.root .. "/examples/counter.lua", { workers = 2, args = { "--shared counters:1M" } })
    local ngx = H.nginx(srv.addr)
    for i = 1, 10 do
      local status, headers, body = H.http(ngx.port, "GET", "/")
      assert.equal(200, status)
      assert.equal("application/json", headers["content-type"])
      assert.equal(('{"hits":%d}\n'):format(i), body)
    end
    local status, _, body = H.http(ngx.port, "POST", "/add?n=5", "")
    assert.equal(200, status)
    assert.equal('{"hits":15}\n', body)
    assert.equal(400, (H.http(ngx.port, "POST", "/add?n=x", "")))
    assert.equal('{"hits":0}\n', select(3, H.http(ngx.port, "DELETE", "/")))
    assert.equal(0, srv.stop())
  end)
end)
