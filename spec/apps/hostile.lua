-- spec/apps/hostile.lua: handlers that misbehave as real ones do: error objects with odd
-- metamethods, to-be-closed variables that never return, loops in coroutines they made, server
-- calls where none belong. Each route is named by what it does.
local scgi = require "scgi"
local R = require "router"
local ok = R.ok

if os.getenv("HOSTILE_SERVE_AT_LOAD") then scgi.handle_requests(function() end) end

local routes = {}

routes["/hello"] = function(_, client) ok(client, "Hello world\n") end

routes["/tostring-raises"] = function()
  error(setmetatable({ msg = "x" }, { __tostring = function(e) return "E" .. e.code end }))
end

routes["/tostring-number"] = function()
  error(setmetatable({}, { __tostring = function() return 42 end }))
end

routes["/tostring-yields"] = function()
  error(setmetatable({}, { __tostring = function() coroutine.yield() end }))
end

routes["/tostring-loops"] = function()
  error(setmetatable({}, { __tostring = function() while true do end end }))
end

routes["/close-loops"] = function()
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  while true do end
end

routes["/close-loops-after-error"] = function()
  local x <close> = setmetatable({}, { __close = function() while true do end end })
  error("boom before the close")
end

routes["/wrap-loop"] = function(_, client)
  local okk, err = pcall(coroutine.wrap(function() while true do end end))
  ok(client, "survived: " .. tostring(okk) .. " " .. tostring(err))
end

routes["/generator-loop"] = function(_, client)
  local out = {}
  for v in coroutine.wrap(function() coroutine.yield(1); while true do end end) do out[#out + 1] = v end
  ok(client, "survived " .. #out)
end

---- the debug library against the bindings' checks: each route gives a file handle (a
---- userdata of io's) a binding's metatable, or calls a binding's internals, and answers what
---- the calls gave (the process must live)

-- A fresh file handle with the metatable registered under name.
local function forged(name)
  local f = assert(io.tmpfile())
  debug.setmetatable(f, debug.getregistry()[name])
  return f
end

-- Answers "name=ok,message" lines for the calls in the table.
local function answer_calls(client, calls)
  local out = {}
  for _, c in ipairs(calls) do
    local okc, err = pcall(c[2])
    out[#out + 1] = c[1] .. "=" .. tostring(okc) .. "," .. tostring(err)
  end
  collectgarbage()
  collectgarbage()
  ok(client, table.concat(out, "\n") .. "\n")
end

routes["/forge-client"] = function(_, client)
  answer_calls(client, {
    { "write", function() return client.write(forged("scgi.client"), "x") end },
    { "closed", function() return client.closed(forged("scgi.client")) end },
    { "tostring", function() return tostring(forged("scgi.client")) end },
    { "close", function() local f <close> = forged("scgi.client") end },
  })
end

routes["/forge-task"] = function(_, client)
  answer_calls(client, {
    { "wait", function() return scgi.wait(forged("scgi.task")) end },
    { "kill", function() return scgi.kill(forged("scgi.task")) end },
    { "uservalue", function()
      local t = scgi.spawn(function() return 1 end)
      scgi.wait(t)
      debug.setuservalue(t, setmetatable({}, { __index = function() return 3 end }), 1)
      return scgi.wait(t)
    end },
    { "uservalue-userdata", function()
      local t = scgi.spawn(function() return 1 end)
      scgi.wait(t)
      local f = io.tmpfile()
      debug.setmetatable(f, { __index = function() return 3 end })
      debug.setuservalue(t, f, 1)
      return scgi.wait(t)
    end },
  })
end

routes["/forge-shared"] = function(_, client)
  local mt = debug.getregistry()["scgi.shared_dict"]
  answer_calls(client, {
    { "get", function() return mt.__index.get(forged("scgi.shared_dict"), "k") end },
    { "keys-box", function() forged("scgi.shared_keys") end },
  })
end

routes["/forge-socket"] = function(_, client)
  local mt = debug.getregistry()["scgi.socket"]
  answer_calls(client, {
    { "send", function() return mt.__index.send(forged("scgi.socket"), "x") end },
    { "close", function() return mt.__index.close(forged("scgi.socket")) end },
    { "session", function() forged("scgi.ssl_session") end },
  })
end

-- The C function at the bottom of the handler's stack (the request's first frame), called again.
routes["/forge-frames"] = function(_, client)
  local first
  for level = 2, 50 do
    local info = debug.getinfo(level, "fS")
    if not info then break end
    if info.what == "C" then first = info.func end
  end
  local w = coroutine.wrap(function() return 1 end)
  debug.setupvalue(w, 1, "not a coroutine")
  answer_calls(client, {
    { "first-frame", function() return first(io.stdout) end },
    { "first-frame-nothing", function() return first() end },
    { "wrap-upvalue", function() return w() end },
  })
end

-- loadfile, dofile and require's searcher with their app upvalue replaced (then put back).
routes["/forge-loaders"] = function(_, client)
  local searcher = package.searchers[2]
  local calls = {}
  for name, f in pairs({ loadfile = loadfile, dofile = dofile, searcher = searcher }) do
    calls[#calls + 1] = { name, function()
      local _, box = debug.getupvalue(f, 1)
      debug.setupvalue(f, 1, io.stdout)
      local ok, err = pcall(f, name == "searcher" and "nosuchmodule" or "/nonexistent.lua")
      debug.setupvalue(f, 1, box)
      assert(f ~= dofile or not ok)
      error(err, 0)
    end }
  end
  table.sort(calls, function(a, b) return a[1] < b[1] end)
  answer_calls(client, calls)
end

routes["/loop"] = function() while true do end end

routes["/gc-loop"] = function(_, client)
  client:write("Status: 200 OK\r\n\r\n")
  client:flush()
  setmetatable({}, { __gc = function() while true do end end })
  collectgarbage()
  collectgarbage()
end

routes["/nested-serve"] = function(_, client)
  local okk, err = pcall(scgi.handle_requests, function() end, { socket = "/nonexistent/x" })
  ok(client, tostring(okk) .. " " .. tostring(err))
end

return R.handler(routes, function(_, client)
  return client:respond(404, { ["Content-Type"] = "text/plain" }, "no route")
end)
