-- spec/failover_spec.lua: beyond one machine: two scgi-lua instances on two loopback TCP ports
-- behind one nginx upstream. Each is stopped (SIGTERM) and started again while requests flow, and
-- no request fails: nginx moves to the other instance, and in-flight requests finish.
local H = require "helper"

describe("two instances behind one nginx upstream", function()
  local ng
  after_each(function()
    if ng and ng.alive() then pcall(ng.stop) end
    ng = nil
    H.cleanup()
  end)

  -- An instance answering its name, on 127.0.0.1:port with 2 workers.
  local function start(name, port)
    return H.start("ops_instance.lua", { socket = "127.0.0.1:" .. port, workers = 2, env = "OPS_INSTANCE=" .. name })
  end

  it("stopping and restarting either instance while requests flow fails no request", function()
    local p1, p2 = H.free_port(), H.free_port()
    local a, b = start("a", p1), start("b", p2)
    ng = H.nginx_upstream({ p1, p2 })
    local load = H.http_load(ng.port, "/?ms=20", 6)

    -- 1: both serve
    load.run_for(1)
    -- 2: a stops (its requests in flight finish); b takes everything
    load.phase = 2
    a.kill("TERM")
    load.run_until(function() return not a.alive() end, 10, "a to exit")
    assert.equal(0, a.wait(1))
    load.run_for(1.2) -- longer than fail_timeout: nginx tries a again, and is refused again
    -- 3: a is back on the same port, and nginx uses it again
    load.phase = 3
    local a2 = start("a", p1)
    load.run_until(function() return load.count("a", 3) >= 5 end, 10, "the restarted a to serve")
    -- 4: b stops; a takes everything
    load.phase = 4
    b.kill("TERM")
    load.run_until(function() return not b.alive() end, 10, "b to exit")
    assert.equal(0, b.wait(1))
    load.phase = 5
    load.run_for(1.2)
    load.drain()

    assert.same({}, load.failures)
    assert.is_true(load.count("a", 1) > 0 and load.count("b", 1) > 0, "phase 1 did not use both instances")
    assert.is_true(load.count("b", 2) > 0)
    assert.is_true(load.count("a", 5) > 0)
    assert.equal(0, load.count("b", 5))
    assert.is_true(#load.answers > 50, #load.answers .. " answers only")
    -- nginx did see the stopped instances refuse connections
    assert.truthy(ng.error_log():find("Connection refused", 1, true), ng.error_log())
    assert.equal(0, a2.stop())
  end)

  it("an instance killed outright (SIGKILL) with requests in flight: nginx retries them on the other", function()
    local p1, p2 = H.free_port(), H.free_port()
    local a, b = start("a", p1), start("b", p2)
    ng = H.nginx_upstream({ p1, p2 })
    local load = H.http_load(ng.port, "/?ms=200", 8) -- long requests: some are always in flight
    load.run_until(function() return load.count("a") >= 3 and load.count("b") >= 3 end, 10, "both to serve")
    load.phase = 2
    a.kill("KILL")
    load.run_until(function() return not a.alive() end, 10, "a to die")
    load.run_for(1.5)
    load.phase = 3
    local a2 = start("a", p1)
    load.run_until(function() return load.count("a", 3) >= 3 end, 10, "the restarted a to serve")
    load.drain()
    assert.same({}, load.failures)
    assert.is_true(load.count("b", 2) > 0)
    assert.equal(0, a2.stop())
    assert.equal(0, b.stop())
  end)
end)
