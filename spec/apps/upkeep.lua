-- spec/apps/upkeep.lua: the app of spec/upkeep_spec.lua and spec/metrics_spec.lua: slow routes
-- (parked and running Lua, in named functions the traceback must show), a route that leaks 100 KB
-- per request, the state's identity, a handler error and a CPU stop.
local scgi = require "scgi"
local R = require "router"

local state = tostring({}):match("0x%x+") -- names this Lua state
local kept = {}

local function wait_in_a_named_function(s) scgi.sleep(s) end

local function spin_in_a_named_function(s)
  local t = scgi.now()
  while scgi.now() - t < s do end
end

local routes = {}
routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end
routes["/state"] = function(_, client) R.ok(client, state .. "\n") end
routes["/park"] = function(h, client)
  wait_in_a_named_function(tonumber(R.query(h).s) or 1)
  R.ok(client, "parked\n")
end
routes["/spin"] = function(h, client)
  spin_in_a_named_function(tonumber(R.query(h).s) or 1)
  R.ok(client, "spun\n")
end
routes["/leak"] = function(_, client)
  kept[#kept + 1] = string.rep("k", 100 * 1024)
  R.ok(client, state .. " " .. #kept .. "\n")
end
routes["/missing"] = function(_, client) client:respond(404, { ["Content-Type"] = "text/plain" }, "no\n") end
routes["/error"] = function() error("upkeep boom") end
routes["/loop"] = function() while true do end end
routes["/memory"] = function(_, client) R.ok(client, tostring(scgi.worker().lua_memory) .. "\n") end

return R.handler(routes)
