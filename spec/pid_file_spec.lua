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

  it("is never written through a symbolic link (the target stays as it was)", function()
    local dir = H.tmpdir()
    H.write_file(dir .. "/target", "keep\n")
    os.execute("ln -s target " .. H.quote(dir .. "/app.pid"))
    local rc, _, err = H.run(H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --pid-file " .. H.quote(dir .. "/app.pid"))
    assert.equal(1, rc)
    assert.truthy(err:find("cannot write the pid file " .. dir .. "/app.pid: it is a symbolic link", 1, true), err)
    assert.equal("keep\n", H.read_file(dir .. "/target"))
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)

  it("is created with mode 0644 whatever the umask", function()
    local dir = H.tmpdir()
    local pidf = dir .. "/app.pid"
    local srv = H.start("ops_app.lua", { dir = dir, env = "umask 077;", options = { ["pid-file"] = pidf } })
    assert.equal(srv.pid .. "\n", H.read_file(pidf))
    assert.equal("644", (H.sh_out("stat -c %a " .. H.quote(pidf)):gsub("%s", "")))
    assert.equal(0, srv.stop())
  end)

  it("a second instance that fails to start leaves the running one's pid file alone", function()
    local dir = H.tmpdir()
    local pidf, stats = dir .. "/app.pid", dir .. "/stats.sock"
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["pid-file"] = pidf, stats = stats } })
    assert.equal(srv.pid .. "\n", H.read_file(pidf))
    local rc, _, err = H.run(H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/two.sock") ..
      " --stats " .. H.quote(stats) .. " --pid-file " .. H.quote(pidf))
    assert.equal(1, rc)
    assert.truthy(err:find("address in use", 1, true), err)
    assert.equal(srv.pid .. "\n", H.read_file(pidf))
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(pidf))
  end)

  it("is removed on exit only while it holds the server's own pid", function()
    local dir = H.tmpdir()
    local pidf = dir .. "/app.pid"
    local srv = H.start("ops_app.lua", { dir = dir, options = { ["pid-file"] = pidf } })
    H.write_file(pidf, "1\n") -- another program's now
    assert.equal(0, srv.stop())
    assert.equal("1\n", H.read_file(pidf))
  end)
end)
