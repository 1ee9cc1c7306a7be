-- spec/listen_spec.lua: the address forms of --socket, the default path, what is found at a unix
-- socket path (stale socket, live server, other file), --socket-mode, and removing the socket.
local H = require "helper"
local socket = require "socket"
local unix = require "socket.unix"

local function is_socket(path) return os.execute("test -S " .. H.quote(path)) == true end

local function mode_of(path)
  local p = io.popen("stat -c %a " .. H.quote(path))
  local m = p:read("l")
  p:close()
  return m
end

-- Starts a server that must fail; returns its exit code and output.
local function start_fails(opts)
  opts.expect_fail = true
  local proc = H.start("client_edges.lua", opts)
  local rc = proc.wait(10)
  return rc, proc.output()
end

describe("--socket address forms", function()
  after_each(H.cleanup)

  it("listens on a plain unix socket path and removes it after SIGTERM", function()
    local dir = H.tmpdir()
    local path = dir .. "/plain.sock"
    local srv = H.start("client_edges.lua", { socket = path, dir = dir })
    assert.equal("unix:" .. path, srv.listen)
    assert.is_true(is_socket(path))
    H.hello_ok(path)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
  end)

  it("listens on unix:/path", function()
    local dir = H.tmpdir()
    local path = dir .. "/prefixed.sock"
    local srv = H.start("client_edges.lua", { socket = "unix:" .. path, dir = dir })
    assert.equal("unix:" .. path, srv.listen)
    assert.equal(path, srv.addr)
    H.hello_ok(path)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
  end)

  it("creates missing parent directories of the socket path", function()
    local dir = H.tmpdir()
    local path = dir .. "/a/b/c/scgi.sock"
    local srv = H.start("client_edges.lua", { socket = path, dir = dir })
    H.hello_ok(path)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
    assert.is_true(H.exists(dir .. "/a/b/c"))
  end)

  it("listens on 127.0.0.1:0 and logs the real port", function()
    local srv = H.start("client_edges.lua", { socket = "127.0.0.1:0" })
    local port = tonumber(srv.addr:match("^127%.0%.0%.1:(%d+)$"))
    assert.is_number(port)
    assert.is_true(port > 0)
    assert.truthy(srv.output():find("scgi-lua: listening on 127.0.0.1:" .. port .. " (1 worker)\n", 1, true))
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)

  it("listens on [::1]:0 (IPv6)", function()
    local probe = socket.tcp6 and socket.tcp6()
    local v6 = probe and probe:bind("::1", 0)
    if probe then probe:close() end
    if not v6 then
      pending("::1 is not available on this machine: IPv6 loopback case skipped")
      return
    end
    local srv = H.start("client_edges.lua", { socket = "[::1]:0" })
    local port = tonumber(srv.addr:match("^%[::1%]:(%d+)$"))
    assert.is_number(port)
    assert.is_true(port > 0)
    H.hello_ok(srv.addr)
    assert.equal(0, srv.stop())
  end)

  -- The command that hands scgi-lua a listening socket on descriptor fd (spec/apps/pass_socket.py):
  -- unix at where, or TCP with its port written to the file where.
  local function pass_socket(kind, where, fd)
    return ("python3 %s %s %s %d -"):format(H.quote(H.apps .. "/pass_socket.py"), kind, H.quote(where), fd)
  end

  it("serves on an inherited listening unix socket given as fd:N", function()
    if not H.have("python3") then
      pending("python3 is not available to hand scgi-lua a listening descriptor")
      return
    end
    local dir = H.tmpdir()
    local path = dir .. "/inherited.sock"
    local srv = H.start("client_edges.lua", { dir = dir, socket = false, args = { "--socket fd:5" },
      env = pass_socket("unix", path, 5) })
    assert.equal("fd:5 (unix:" .. path .. ")", srv.listen)
    H.hello_ok(path)
    local status, _, body = H.request(path, "POST", "/echo", "through fd 5")
    assert.equal(200, status)
    assert.equal("through fd 5", body)
    assert.equal(0, srv.stop())
    -- the socket file belongs to whoever created it: scgi-lua did not, and leaves it
    assert.is_true(is_socket(path))
    os.remove(path)
  end)

  it("serves on an inherited listening TCP socket given as fd:N", function()
    if not H.have("python3") then
      pending("python3 is not available to hand scgi-lua a listening descriptor")
      return
    end
    local dir = H.tmpdir()
    local srv = H.start("client_edges.lua", { dir = dir, socket = false, args = { "--socket fd:7" },
      env = pass_socket("tcp", dir .. "/port", 7) })
    local port = assert(H.read_file(dir .. "/port"))
    assert.equal("fd:7 (127.0.0.1:" .. port .. ")", srv.listen)
    H.hello_ok("127.0.0.1:" .. port)
    assert.equal(0, srv.stop())
  end)

  it("refuses fd:N when N is not a listening socket (exit 1), or not a number (a bad value: exit 2)", function()
    local rc, out = start_fails({ socket = "fd:0" }) -- stdin is /dev/null
    assert.equal(1, rc)
    assert.truthy(out:find("fd:0 is not a socket", 1, true))
    rc, out = start_fails({ socket = "fd:x1" })
    assert.equal(2, rc)
    assert.truthy(out:find("invalid value for --socket: 'fd:x1' (fd: takes a descriptor number)", 1, true), out)
  end)

  it("refuses an address it cannot parse (a bad value: exit 2)", function()
    for _, a in ipairs({ "nonsense", "[::1]", "127.0.0.1:", "a:b:c" }) do
      local rc, out = start_fails({ socket = a })
      assert.equal(2, rc)
      assert.truthy(out:find("invalid value for --socket: '" .. a .. "'", 1, true), out)
    end
  end)

  it("exits 1 with 'address in use' on a TCP port that is taken", function()
    local taken = assert(socket.bind("127.0.0.1", 0))
    local _, port = taken:getsockname()
    local rc, out = start_fails({ socket = "127.0.0.1:" .. port })
    taken:close()
    assert.equal(1, rc)
    assert.truthy(out:find("address in use", 1, true), out)
  end)

  it("exits 2 on a unix socket path that is too long (a bad value)", function()
    local path = H.tmpdir() .. "/" .. ("l"):rep(120) .. ".sock"
    local rc, out = start_fails({ socket = path })
    assert.equal(2, rc)
    assert.truthy(out:find("a unix socket path is at most 107 bytes", 1, true), out)
    assert.is_false(H.exists(path))
  end)
end)

describe("the default socket path", function()
  after_each(H.cleanup)

  it("is /tmp/<uid>/scgi when --socket is not given", function()
    local dir = "/tmp/" .. H.uid()
    local path = dir .. "/scgi"
    if H.exists(path) then
      -- shared path: something (maybe a live server, maybe another user's file) is there
      pending(path .. " already exists; the default-path case would touch it, so it is skipped")
      return
    end
    local had_dir = H.exists(dir)
    local srv
    finally(function()
      H.kill(srv)
      if not had_dir then os.execute("rmdir " .. H.quote(dir) .. " 2>/dev/null") end
    end)
    srv = H.start("client_edges.lua", { socket = false })
    assert.equal("unix:" .. path, srv.listen)
    H.hello_ok(path)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
  end)
end)

describe("what is already at a unix socket path", function()
  after_each(H.cleanup)

  it("replaces a stale socket file nobody listens on", function()
    local dir = H.tmpdir()
    local path = dir .. "/stale.sock"
    local s = unix.stream and unix.stream() or unix()
    assert(s:bind(path))
    s:close() -- LuaSocket does not unlink: the file stays, with nobody behind it
    assert.is_true(is_socket(path))
    local c = unix.stream and unix.stream() or unix()
    assert.is_nil((c:connect(path)))
    c:close()
    local srv = H.start("client_edges.lua", { socket = path, dir = dir })
    H.hello_ok(path)
    assert.equal(0, srv.stop())
    assert.is_false(H.exists(path))
  end)

  it("exits 1 with 'address in use' where a live server answers, leaving that server alone", function()
    local dir = H.tmpdir()
    local path = dir .. "/live.sock"
    local first = H.start("client_edges.lua", { socket = path, dir = dir })
    local rc, out = start_fails({ socket = path })
    assert.equal(1, rc)
    assert.truthy(out:find("address in use", 1, true), out)
    assert.is_true(is_socket(path))
    H.hello_ok(path) -- the first server still has its socket
    assert.equal(0, first.stop())
    assert.is_false(H.exists(path))
  end)

  it("exits 1 and leaves a regular file at the path untouched", function()
    local dir = H.tmpdir()
    local path = dir .. "/not-a-socket"
    H.write_file(path, "precious data\n")
    local rc, out = start_fails({ socket = path })
    assert.equal(1, rc)
    assert.truthy(out:find(path .. " exists and is not a socket", 1, true), out)
    assert.equal("precious data\n", H.read_file(path))
    assert.is_false(is_socket(path))
  end)

  it("exits 1 and leaves a directory at the path untouched", function()
    local dir = H.tmpdir()
    local path = dir .. "/a-directory"
    os.execute("mkdir " .. H.quote(path) .. " && touch " .. H.quote(path .. "/inside"))
    local rc, out = start_fails({ socket = path })
    assert.equal(1, rc)
    assert.truthy(out:find("is not a socket", 1, true), out)
    assert.is_true(H.exists(path .. "/inside"))
  end)
end)

describe("--socket-mode", function()
  after_each(H.cleanup)

  for _, mode in ipairs({ "0660", "0600", "0777" }) do
    it("gives the socket file the permission bits " .. mode, function()
      local dir = H.tmpdir()
      local path = dir .. "/mode.sock"
      local srv = H.start("client_edges.lua", { socket = path, dir = dir, options = { ["socket-mode"] = mode } })
      assert.equal(mode:sub(2), mode_of(path))
      H.hello_ok(path)
      assert.equal(0, srv.stop())
      assert.is_false(H.exists(path))
    end)
  end

  it("leaves the mode to the umask without --socket-mode", function()
    local dir = H.tmpdir()
    local path = dir .. "/umask.sock"
    local srv = H.start("client_edges.lua", { socket = path, dir = dir, env = "umask 027;" })
    assert.equal("750", mode_of(path))
    assert.equal(0, srv.stop())
  end)
end)
