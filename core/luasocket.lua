-- luasocket.lua: LuaSocket and LuaSec made cooperative inside requests and tasks: socket.tcp(),
-- socket.connect(), socket.unix(), socket.sleep() and ssl.wrap() give or use scgi's cooperative
-- sockets there; outside a task (at load time) they are LuaSocket's and LuaSec's own. Compiled into
-- the C module, and run by luaopen_scgi_core with its table.
local core = ...
local in_task, tcp, sleep, tls_wrap = core.in_task, core.tcp, core.sleep, core.tls_wrap
local getmetatable, type = getmetatable, type

-- s connected to address (and port), or s closed and nil and why.
local function connected(s, address, port)
  local ok, err = s:connect(address, port)
  if not ok then
    s:close()
    return nil, err
  end
  return s
end

-- scgi.connect(host, port) or scgi.connect(path): a connected cooperative socket, or nil and why.
function core.connect(host, port)
  return connected(tcp(port == nil and "unix" or "any", "scgi.connect"), host, port)
end

local function connect_with(family)
  return function(address, port, laddress)
    if laddress then return nil, "cooperative sockets do not bind to a local address" end
    return connected(tcp(family), address, port)
  end
end

-- Replaces M[name] by a function that calls coop(...) in a task and the original elsewhere.
local function inside(M, name, coop)
  local plain = M[name]
  if type(plain) ~= "function" then return end
  M[name] = function(...)
    if in_task() then return coop(...) end
    return plain(...)
  end
end

local function patch_socket(M)
  if type(M) ~= "table" or M.scgi_cooperative then return M end
  inside(M, "tcp", function() return tcp("any") end)
  inside(M, "tcp4", function() return tcp("inet") end)
  inside(M, "tcp6", function() return tcp("inet6") end)
  inside(M, "connect", connect_with("any"))
  inside(M, "connect4", connect_with("inet"))
  inside(M, "connect6", connect_with("inet6"))
  inside(M, "sleep", function(t) return sleep(t or 0) end)
  M.scgi_cooperative = true
  return M
end

local function patch_unix(U)
  if type(U) ~= "table" or U.scgi_cooperative then return U end
  local unix = function() return tcp("unix") end
  inside(U, "stream", unix)
  inside(U, "tcp", unix)
  local mt = getmetatable(U)
  if mt and type(mt.__call) == "function" then
    local call = mt.__call
    mt.__call = function(self, ...)
      if in_task() then return unix() end
      return call(self, ...)
    end
  end
  U.scgi_cooperative = true
  return U
end

-- Whether LuaSec's params check nothing (verify "none", LuaSec's default and ssl.https's).
local function verifies_nothing(params)
  local v = type(params) == "table" and params.verify or "none"
  if type(v) == "table" then v = v[1] end
  return v == nil or v == "none"
end

local function patch_ssl(S)
  if type(S) ~= "table" or S.scgi_cooperative then return S end
  local wrap, warned = S.wrap, false
  if type(wrap) == "function" then
    S.wrap = function(sock, params, ...)
      if core.is_socket(sock) then
        if not warned and verifies_nothing(params) then -- not silently: once per worker state
          warned = true
          warn("ssl.wrap with verify = \"none\" (LuaSec's default, and ssl.https's): the peer's ",
            "certificate is not checked; pass verify = \"peer\" (sslhandshake checks by default)")
        end
        return tls_wrap(sock, params)
      end
      return wrap(sock, params, ...)
    end
  end
  S.scgi_cooperative = true
  return S
end

-- Patches the module now if it is loaded, else when it is: a preload entry loads the real one
-- through the other searchers, then patches it.
local function hook(name, patch)
  local loaded = package.loaded[name]
  if loaded then
    patch(loaded)
    return
  end
  package.preload[name] = function(...)
    package.preload[name] = nil
    return patch(require(name))
  end
end

hook("socket", patch_socket)
hook("socket.unix", patch_unix)
hook("ssl", patch_ssl)
