-- spec/install_spec.lua: `make install` and `luarocks make` from the checkout give a program and a
-- module that work from where they were installed.
local H = require "helper"

local function run(cmd)
  local p = io.popen("cd " .. H.quote(H.root) .. " && " .. cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

local app = [[
local scgi = require "scgi"
return function(headers, client)
  local q = scgi.parse_query(headers.QUERY_STRING)
  client:respond(200, { ["Content-Type"] = "text/plain" }, "installed " .. scgi.version .. " " .. q.x)
end
]]

-- Starts the installed program on the app and checks it answers through the installed module.
local function serves(program, dir)
  H.write_file(dir .. "/app.lua", app)
  local srv = H.start(dir .. "/app.lua", { dir = dir, env = "SCGI_LUA_UNUSED=1", program = program })
  local status, _, body = H.request(srv.addr, "GET", "/?x=42")
  assert.equal(200, status, body)
  assert.matches("^installed %d+%.%d+%.%d+ 42$", body)
  assert.equal(0, srv.stop())
end

describe("installing", function()
  after_each(H.cleanup)

  it("make install with DESTDIR and PREFIX puts a working program and module in place", function()
    local dir = H.tmpdir()
    -- make install must only copy: a rebuild here would replace the build the other specs run
    -- (an ASan build, say) with one made with other flags
    local rc, out = run("make -q O=" .. H.quote(H.build) .. " all")
    assert.equal(0, rc, H.build .. " is not up to date; build it first (make test does)\n" .. out)
    rc, out = run("make install O=" .. H.quote(H.build) .. " DESTDIR=" .. H.quote(dir) .. " PREFIX=/opt/scgi")
    assert.equal(0, rc, out)
    for _, f in ipairs({ "/opt/scgi/bin/scgi-lua", "/opt/scgi/lib/lua/5.4/scgi/core.so",
                         "/opt/scgi/share/lua/5.4/scgi/init.lua", "/opt/scgi/share/lua/5.4/scgi/request.lua" }) do
      assert.is_truthy(io.open(dir .. f), f .. " is missing")
    end
    serves(dir .. "/opt/scgi/bin/scgi-lua", dir)
  end)

  it("luarocks make --tree T installs the program and the module, which work from T", function()
    if not H.have("luarocks") then
      error("luarocks is not installed (CI installs it)")
    end
    local dir = H.tmpdir()
    local tree = dir .. "/tree"
    -- a copy of the checkout, so luarocks builds from scratch and leaves the specs' build alone
    local rc, out = run("mkdir " .. H.quote(dir .. "/src") .. " && tar --exclude='./build*' --exclude=./.git " ..
      "--exclude=./scgi-lua -cf - . | tar -C " .. H.quote(dir .. "/src") .. " -xf -")
    assert.equal(0, rc, out)
    rc, out = run("cd " .. H.quote(dir .. "/src") .. " && luarocks --lua-version=5.4 make --tree " ..
      H.quote(tree) .. " scgi-lua-scm-1.rockspec")
    assert.equal(0, rc, out)
    serves(tree .. "/bin/scgi-lua", dir)
    -- the module from the tree, in a stock lua5.4
    local p = io.popen("eval \"$(luarocks --lua-version=5.4 path --tree " .. H.quote(tree) .. ")\"; cd / && " ..
      "lua5.4 -e 'local s = require \"scgi\"; print(s.version, type(s.handle_requests), " ..
      "package.searchpath(\"scgi.core\", package.cpath))' 2>&1")
    local line = p:read("a")
    p:close()
    assert.matches("^%d+%.%d+%.%d+\tfunction\t" .. tree:gsub("%p", "%%%0") .. "/lib/lua/5.4/scgi/core.so", line)
  end)
end)
