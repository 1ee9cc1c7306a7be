-- spec/privileges_spec.lua: the listening socket's mode and owner (--socket-mode, --socket-owner)
-- and dropping privileges (--user, --group), as root and as nobody.
local H = require "helper"

local AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups --"

describe("socket permissions and privileges", function()
  after_each(H.cleanup)

  local function mode_of(path) return (H.sh_out("stat -c '%a %U:%G' " .. H.quote(path)):gsub("\n$", "")) end

  for _, mode in ipairs({ "0660", "0666", "0600" }) do
    it("--socket-mode " .. mode .. " sets the socket's mode exactly (not through the umask)", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-mode"] = mode } })
      assert.equal(mode:sub(2), mode_of(srv.addr):match("^%d+"))
      assert.equal(200, (H.scgi_get(srv.addr, "/ok")))
      assert.equal(0, srv.stop())
    end)
  end

  it("--socket-owner on a TCP socket exits 1; an unknown user exits 2 naming the option", function()
    local app = H.quote(H.apps .. "/ops_app.lua")
    local rc, _, err = H.run(app .. " --socket 127.0.0.1:0 --socket-owner nobody")
    assert.equal(1, rc)
    assert.truthy(err:find("--socket-owner applies to a unix socket path only", 1, true), err)
    local dir = H.tmpdir()
    rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --socket-owner no-such-user-x")
    assert.equal(2, rc)
    assert.truthy(err:find("invalid value for --socket-owner: 'no-such-user-x' (no such user)", 1, true), err)
    assert.is_false(H.exists(dir .. "/s.sock"))
    rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --user no-such-user-x")
    assert.equal(2, rc)
    assert.truthy(err:find("invalid value for --user: 'no-such-user-x' (no such user)", 1, true), err)
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)

  it("--group without --user exits 2: it would keep uid 0", function()
    local dir = H.tmpdir()
    local rc, _, err = H.run(H.quote(H.apps .. "/ops_app.lua") .. " --socket " .. H.quote(dir .. "/s.sock") ..
      " --group nogroup")
    assert.equal(2, rc)
    assert.truthy(err:find("--group needs --user", 1, true), err)
    assert.is_false(H.exists(dir .. "/s.sock"))
  end)

  describe("as root", function()
    if H.uid() ~= "0" then
      pending("these run as root only (CI runs the specs as root)")
      return
    end

    it("--socket-owner nobody:nogroup gives the socket to nobody:nogroup", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-owner"] = "nobody:nogroup", ["socket-mode"] = "0660" } })
      assert.equal("660 nobody:nogroup", mode_of(srv.addr))
      assert.equal(200, (H.scgi_get(srv.addr, "/ok")))
      assert.equal(0, srv.stop())
    end)

    it("--socket-owner nobody keeps the group", function()
      local srv = H.start("ops_app.lua", { options = { ["socket-owner"] = "nobody" } })
      assert.equal("nobody:root", mode_of(srv.addr):match("%S+$"))
      assert.equal(0, srv.stop())
    end)

    -- The Uid/Gid lines of every thread of the process: all four ids of each.
    local function ids_of(pid)
      local out = {}
      for task in H.sh_out("ls /proc/" .. pid .. "/task"):gmatch("%d+") do
        local st = H.read_file("/proc/" .. pid .. "/task/" .. task .. "/status") or ""
        out[#out + 1] = { uid = st:match("Uid:%s*([^\n]*)"), gid = st:match("Gid:%s*([^\n]*)"),
          groups = st:match("Groups:([^\n]*)") }
      end
      return out
    end

    it("--user nobody --group nogroup: the socket is bound as root, the app loads as nobody", function()
      local dir = H.tmpdir()
      os.execute("mkdir -m 700 " .. H.quote(dir .. "/private"))
      local sock = dir .. "/private/app.sock" -- only root can create it: bound before the drop
      local srv = H.start("ops_app.lua", { socket = sock, workers = 2, env = "OPS_SHOW_UID=1",
        options = { user = "nobody", group = "nogroup" } })
      local out = srv.output()
      local drop = out:find("running as uid 65534, gid 65534", 1, true)
      -- (the two lines come from two threads: their order in the output says nothing)
      local load = out:find("OPS LOAD Uid:\t65534\t65534\t65534\t65534 Gid:\t65534\t65534\t65534\t65534", 1, true)
      assert.truthy(drop, out)
      assert.truthy(load, out)
      local threads = ids_of(H.serving_pid(srv))
      assert.is_true(#threads >= 4) -- main, log thread, two workers
      for _, t in ipairs(threads) do
        assert.equal("65534\t65534\t65534\t65534", t.uid)
        assert.equal("65534\t65534\t65534\t65534", t.gid)
        assert.equal("", (t.groups:gsub("%s", "")))
      end
      local status, body = H.scgi_get(sock, "/uid")
      assert.equal(200, status)
      assert.equal("Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n", body)
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
    end)

    it("--user nobody alone takes nobody's group", function()
      local srv = H.start("ops_app.lua", { options = { user = "nobody" } })
      assert.truthy(srv.output():find("running as uid 65534, gid 65534", 1, true))
      local status, body = H.scgi_get(srv.addr, "/uid")
      assert.equal(200, status)
      assert.truthy(body:find("Gid:\t65534\t", 1, true), body)
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
    end)

    -- The socket and the pid file are created as root before the drop; when the dropped user
    -- cannot write their directory they stay behind, and the log says which and why.
    it("with --user, the socket and pid file it cannot remove are named in a warning", function()
      local dir = H.tmpdir()
      local srv = H.start("ops_app.lua", { dir = dir, options = { user = "nobody", ["pid-file"] = dir .. "/app.pid" } })
      assert.equal(srv.pid .. "\n", H.read_file(dir .. "/app.pid"))
      srv.kill("TERM")
      assert.equal(0, srv.wait(10))
      for _, f in ipairs({ srv.addr, dir .. "/app.pid" }) do
        if H.exists(f) then
          assert.truthy(srv.output():find("cannot remove " .. f .. ": Permission denied", 1, true), srv.output())
          assert.truthy(srv.output():find("uid 65534", 1, true), srv.output())
        end
      end
    end)

    describe("when not root (under setpriv as nobody)", function()
      if not H.have("setpriv") then
        pending("setpriv is not installed")
        return
      end
      local app = H.quote(H.apps .. "/ops_app.lua")

      local function nobody_dir()
        local dir = H.tmpdir()
        os.execute("chown nobody:nogroup " .. H.quote(dir))
        return dir
      end

      it("--user root exits 1 naming the user and the fix", function()
        local dir = nobody_dir()
        local rc, out, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --user root", AS_NOBODY)
        assert.equal(1, rc)
        assert.equal("", out)
        assert.truthy(err:find("cannot switch to user root", 1, true), err)
        assert.truthy(err:find("runs as uid 65534, not root", 1, true), err)
        assert.truthy(err:find("start it as root, or leave out --user and --group", 1, true), err)
        assert.is_nil(err:find("listening on", 1, true))
        assert.is_false(H.exists(dir .. "/s.sock"))
      end)

      it("--user with one's own user is no change", function()
        local dir = nobody_dir()
        local p = H.spawn(AS_NOBODY .. " " .. H.quote(H.program) .. " " .. app .. " --socket " ..
          H.quote(dir .. "/s.sock") .. " --user nobody --group nogroup", dir, "scgi")
        H.wait_for(function() return p.output():find("listening on", 1, true) or not p.alive() end, 10, "scgi-lua")
        assert.is_true(p.alive(), p.output())
        assert.equal(200, (H.scgi_get(dir .. "/s.sock", "/ok")))
        p.kill("TERM")
        assert.equal(0, p.wait(10))
        assert.is_false(H.exists(dir .. "/s.sock"))
      end)

      it("--socket-owner root exits 1 naming the socket, the uid and the fix", function()
        local dir = nobody_dir()
        local rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock") .. " --socket-owner root", AS_NOBODY)
        assert.equal(1, rc)
        assert.truthy(err:find("cannot give " .. dir .. "/s.sock to root", 1, true), err)
        assert.truthy(err:find("running as uid 65534", 1, true), err)
        assert.is_false(H.exists(dir .. "/s.sock"))
      end)

      it("a privileged port: the message says the port is privileged, not a directory's access", function()
        local rc, _, err = H.run(app .. " --user nobody --socket 127.0.0.1:80", AS_NOBODY)
        assert.equal(1, rc)
        assert.truthy(err:find("cannot bind 127.0.0.1:80: Permission denied", 1, true), err)
        assert.truthy(err:find("port 80 is privileged", 1, true), err)
        assert.is_nil(err:find("directory", 1, true), err)
      end)

      it("a socket in a directory the user cannot write: the message names the path and the user", function()
        local dir = H.tmpdir() -- root's, mode 755
        local rc, _, err = H.run(app .. " --socket " .. H.quote(dir .. "/s.sock"), AS_NOBODY)
        assert.equal(1, rc)
        assert.truthy(err:find(dir .. "/s.sock", 1, true), err)
        assert.truthy(err:find("Permission denied", 1, true), err)
        assert.truthy(err:find("nobody", 1, true) or err:find("uid 65534", 1, true),
          "the message does not name the user: " .. err)
      end)
    end)
  end)
end)
