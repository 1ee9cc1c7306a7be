-- spec/pid_file_spec.lua: --pid-file: written while the server listens, removed on SIGTERM, never
-- written by a server that fails to start.
local H = require "helper"

describe("--pid-file", function()
  after_each(H.cleanup)

  it("holds the process id while it listens and is removed on SIGTERM", function()
    local dir = H.tmpdir()
    local pidf = dir .. "/run/app.pid"
    os.execute("mkdir " .. H.quote(dir .. "/run"))
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["pid-file"] = pidf } })
    assert.equal(srv.pid .. "\n", H.read_file(pidf))
    srv.kill("TERM")
    assert.equal(0, srv.wait(10))
    assert.is_false(H.exists(pidf))
  end)

  it("is not written by a server that fails to start, and an unwritable path exits 1", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/broken.lua", "return 1\n")
    local rc = H.run(H.quote(dir .. "/broken.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --pid-file " .. H.quote(dir .. "/app.pid"))
    assert.equal(1, rc)
    assert.is_false(H.exists(dir .. "/app.pid"))
    local err
    rc, _, err = H.run(H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --pid-file /nonexistent-dir/app.pid")
    assert.equal(1, rc)
    assert.truthy(err:find("cannot write the pid file /nonexistent-dir/app.pid", 1, true), err)
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)
end)
