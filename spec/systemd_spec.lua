-- spec/systemd_spec.lua: systemd socket activation: a unix or TCP socket passed on fd 3 with
-- LISTEN_PID and LISTEN_FDS, --socket systemd without one, LISTEN_PID naming another process, and
-- an explicit --socket winning over a passed socket.
local H = require "helper"

describe("systemd socket activation", function()
  after_each(H.cleanup)

  -- Starts scgi-lua on ops_app.lua with 2 workers and args, handed a listening socket (unix at
  -- `where`, or TCP on 127.0.0.1:0) on fd 3 with LISTEN_PID naming it (plus pid_delta).
  local function launch(kind, where, args, pid_delta)
    local cmd = ("exec python3 %s %s %s 3 %d %s %s --workers 2 %s"):format(H.quote(H.apps .. "/pass_socket.py"),
      kind, H.quote(where or "-"), pid_delta or 0, H.quote(H.program), H.quote(H.apps .. "/ops_app.lua"), args or "")
    return H.spawn(cmd, H.tmpdir(), "scgi")
  end

  it("takes a unix socket on fd 3 when LISTEN_PID and LISTEN_FDS name the process", function()
    local dir = H.tmpdir()
    local path = dir .. "/activated.sock"
    local p = launch("unix", path)
    assert.equal("fd:3 (unix:" .. path .. ")", H.listening(p))
    for _ = 1, 5 do assert.equal("ok\n", select(2, H.scgi_get(path, "/ok"))) end
    -- the variables are not passed on to the app (its children would take them for theirs)
    for _, name in ipairs({ "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES" }) do
      assert.equal("(nil)\n", select(2, H.scgi_get(path, "/env?name=" .. name)))
    end
    p.kill("TERM")
    assert.equal(0, p.wait(10))
    -- the socket belongs to systemd: scgi-lua leaves the file alone
    assert.is_true(H.exists(path))
  end)

  it("takes a TCP socket on fd 3 with --socket systemd", function()
    local p = launch("tcp", nil, "--socket systemd")
    local addr = H.listening(p):match("^fd:3 %((127%.0%.0%.1:%d+)%)$")
    assert.truthy(addr, p.output())
    for _ = 1, 5 do
      local status, body = H.scgi_get(addr, "/ok")
      assert.equal(200, status)
      assert.equal("ok\n", body)
    end
    assert.equal(404, (H.scgi_get(addr, "/nope")))
    p.kill("TERM")
    assert.equal(0, p.wait(10))
  end)

  it("--socket systemd without a passed socket exits 1 with a clear message", function()
    local rc, out, err = H.run(H.quote(H.apps .. "/ops_app.lua") .. " --socket systemd",
      "env -u LISTEN_PID -u LISTEN_FDS")
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("--socket systemd: no socket was passed", 1, true), err)
    assert.truthy(err:find("LISTEN_PID", 1, true), err)
    assert.is_nil(err:find("listening on", 1, true))
  end)

  it("ignores LISTEN_PID naming another process", function()
    local dir = H.tmpdir()
    local p = launch("unix", dir .. "/other.sock", "--socket systemd", 1)
    assert.equal(1, p.wait(10))
    assert.truthy(p.output():find("--socket systemd: no socket was passed", 1, true), p.output())
  end)

  it("an explicit --socket PATH wins over a passed socket", function()
    local dir = H.tmpdir()
    local mine = dir .. "/mine.sock"
    local p = launch("unix", dir .. "/passed.sock", "--socket " .. H.quote(mine))
    assert.equal("unix:" .. mine, H.listening(p))
    assert.equal("ok\n", select(2, H.scgi_get(mine, "/ok")))
    p.kill("TERM")
    assert.equal(0, p.wait(10))
    assert.is_false(H.exists(mine))
  end)
end)
