-- spec/upkeep_spec.lua: --slow-log (one line while the request runs, with the traceback of where
-- it is, parked or running Lua), --max-requests and --max-lua-memory (a fresh Lua state, no
-- request lost, memory bounded), --check and --backlog.
local H = require "helper"

describe("--slow-log", function()
  local srv = H.serve("upkeep.lua", { options = { ["slow-log"] = "0.3" } })

  it("logs a parked request while it waits, with the traceback of where it waits", function()
    local mark = #srv.output()
    local finish = H.start_request(srv.addr, "/park", { s = 1 })
    local out = H.wait_log(srv, mark, "slow:", 3)
    local status, _, body = finish()
    assert.equal(200, status)
    assert.equal("parked\n", body)
    assert.truthy(out:find("GET /park%?s=1: slow: 0%.%d s so far"), out)
    assert.truthy(out:find("the handler, waiting on scgi.sleep", 1, true), out)
    assert.truthy(out:find("in upvalue 'wait_in_a_named_function'", 1, true), out)
    assert.equal(1, H.count(H.log_since(srv, mark), "slow:"))
  end)

  it("logs a request running Lua, with the traceback of the code it runs", function()
    local mark = #srv.output()
    local status, _, body = H.request(srv.addr, "GET", "/spin?s=1")
    assert.equal(200, status)
    assert.equal("spun\n", body)
    local out = H.log_since(srv, mark)
    assert.truthy(out:find("GET /spin%?s=1: slow: 0%.%d s so far"), out)
    assert.truthy(out:find("the handler, running Lua", 1, true), out)
    assert.truthy(out:find("in upvalue 'spin_in_a_named_function'", 1, true), out)
  end)

  it("says nothing of requests quicker than it", function()
    local mark = #srv.output()
    for _ = 1, 20 do H.hello_ok(srv.addr) end
    H.sleep(0.5)
    assert.is_nil(H.log_since(srv, mark):find("slow:", 1, true))
  end)
end)

describe("state recycling", function()
  after_each(H.cleanup)

  local function state_of(addr)
    local status, body = H.scgi_get(addr, "/state")
    assert.equal(200, status)
    return body
  end

  it("--max-requests 50 builds a fresh state after about 50 requests, none of them failing", function()
    local srv = H.start("upkeep.lua", { workers = 1, options = { ["max-requests"] = "50" } })
    local ng = H.nginx(srv.addr)
    local first = state_of(srv.addr)
    local load = H.http_load(ng.port, "/leak", 8)
    load.run_until(function() return #load.answers >= 400 end, 60, "400 answers")
    load.drain()
    assert.same({}, load.failures)
    local out = srv.output()
    local recycles = H.count(out, "worker 0: a fresh Lua state (")
    -- 401 requests (and the /state probes) at 45 to 55 per state, plus what the old state answers
    -- while the fresh one loads on its own thread (more on a loaded machine)
    assert.is_true(recycles >= 3 and recycles <= 10, recycles .. " recycles")
    for n in out:gmatch("a fresh Lua state %((%d+) requests, %-%-max%-requests 50%)") do
      assert.is_true(tonumber(n) >= 45, n .. " requests before a recycle")
    end
    assert.truthy(out:find("requests, --max-requests 50)", 1, true))
    assert.are_not.equal(first, state_of(srv.addr))
    ng.stop()
    assert.equal(0, srv.stop())
  end)

  it("--max-lua-memory 8 keeps a leaking app bounded (100 KB per request): 0 failed requests", function()
    local srv = H.start("upkeep.lua", { workers = 1, options = { ["max-lua-memory"] = "8" } })
    local ng = H.nginx(srv.addr)
    local load = H.http_load(ng.port, "/leak", 4)
    local peak = 0
    load.run_until(function()
      peak = math.max(peak, (tonumber((select(2, H.scgi_get(srv.addr, "/memory")))) or 0))
      return #load.answers >= 600
    end, 90, "600 answers")
    load.drain()
    assert.same({}, load.failures)
    -- 600 requests would keep 60 MB; the fresh states keep it near the limit (8 MiB, plus an
    -- eighth of it before the next full collection, plus the old state while it drains)
    assert.is_true(peak < 12 * 1048576, ("Lua memory reached %.1f MiB"):format(peak / 1048576))
    local out = srv.output()
    assert.truthy(out:find("MiB after a collection, --max-lua-memory 8)", 1, true), out)
    ng.stop()
    assert.equal(0, srv.stop())
  end)
end)

-- Issue 18, item 14: a recycled state runs the code of the last load or reload.
describe("state recycling runs the code that was loaded", function()
  after_each(H.cleanup)

  local function write_version(dir, v)
    H.write_file(dir .. "/app.lua", ([[
local mod = require "recycled_mod"
local data = dofile(%q)
local extra = loadfile(%q)()
return function(_, client)
  client:write("Status: 200 OK\r\n\r\n", %q, "+", mod.version, "+", data, "+", extra)
end
]]):format(dir .. "/data.lua", dir .. "/extra.lua", "a" .. v))
    H.write_file(dir .. "/recycled_mod.lua", ('return { version = "m%s" }\n'):format(v))
    H.write_file(dir .. "/data.lua", ('return "d%s"\n'):format(v))
    H.write_file(dir .. "/extra.lua", ('return "e%s"\n'):format(v))
  end

  local function answers(srv, n, want)
    for i = 1, n do
      local status, body = H.scgi_get(srv.addr, "/")
      assert.equal(200, status)
      assert.equal(want, body, "answer " .. i)
    end
  end

  it("--max-requests: files edited or broken on disk are not served until SIGHUP", function()
    local dir = H.tmpdir()
    write_version(dir, "1")
    local srv = H.start(dir .. "/app.lua", { dir = dir, workers = 1, options = { ["max-requests"] = "10" } })
    answers(srv, 5, "a1+m1+d1+e1")
    -- requests (each answered want) until the log since then shows n recycles; bounded
    local function answers_across_recycles(n, want)
      local mark = #srv.output()
      local function recycles() return H.count(H.log_since(srv, mark), "worker 0: a fresh Lua state (") end
      local t_end, served = H.now() + 60, 0
      while recycles() < n do
        assert.is_true(H.now() < t_end and served < 2000, "only " .. recycles() .. " recycles")
        answers(srv, 1, want)
        served = served + 1
      end
      answers(srv, 5, want)
      return H.log_since(srv, mark)
    end
    write_version(dir, "2")
    answers_across_recycles(3, "a1+m1+d1+e1")
    -- broken files on disk: recycling goes on with the code it had
    for _, f in ipairs({ "app.lua", "recycled_mod.lua", "data.lua", "extra.lua" }) do
      H.write_file(dir .. "/" .. f, "return function(\n")
    end
    local out = answers_across_recycles(3, "a1+m1+d1+e1")
    assert.is_nil(out:find("cannot build a fresh Lua state", 1, true), out)
    -- SIGHUP brings the new code, and recycling keeps it from then on
    local mark = #srv.output()
    write_version(dir, "3")
    srv.kill("HUP")
    H.wait_log(srv, mark, "worker 0: reloaded", 5)
    write_version(dir, "4")
    answers_across_recycles(2, "a3+m3+d3+e3")
    assert.equal(0, srv.stop())
  end)
end)

describe("--check", function()
  after_each(H.cleanup)

  it("loads the app as a worker would, binds nothing, and exits 0", function()
    local dir = H.tmpdir()
    local rc, _, out = H.run(H.quote(H.apps .. "/upkeep.lua") .. " --check --socket " .. H.quote(dir .. "/s.sock"))
    assert.equal(0, rc, out)
    assert.truthy(out:find("upkeep.lua: ok", 1, true), out)
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)

  it("exits 1 naming the file and the line of a syntax error", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/broken.lua", "return function(h, c)\n  c:write(\nend\n")
    local rc, _, out = H.run(H.quote(dir .. "/broken.lua") .. " --check")
    assert.equal(1, rc, out)
    assert.truthy(out:find("broken.lua:3:", 1, true), out)
  end)

  it("exits 2 for a bad option, as serving would", function()
    local rc = H.run(H.quote(H.apps .. "/upkeep.lua") .. " --check --workers zero")
    assert.equal(2, rc)
  end)
end)

describe("--backlog", function()
  after_each(H.cleanup)

  it("sets the listen queue's length (ss shows it)", function()
    if not H.have("ss") then pending("no ss (iproute2)") end
    local port = H.free_port()
    local srv = H.start("upkeep.lua", { socket = "127.0.0.1:" .. port, options = { backlog = "77" } })
    local line = H.sh_out("ss -ltn 'sport = :" .. port .. "'")
    assert.truthy(line:find("%s77%s"), line)
    assert.equal(0, srv.stop())
  end)
end)
