-- spec/apps/crash.lua: an app whose /crash kills the serving process it runs in (as a crash in a
-- C module would), and whose answers name that process.
local R = require "router"

local function pid()
  local f = io.open("/proc/self/stat")
  local s = f:read("l")
  f:close()
  return s:match("^(%d+)")
end

local routes = {}
routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end
routes["/pid"] = function(_, client) R.ok(client, pid() .. "\n") end
routes["/crash"] = function() os.execute("kill -SEGV " .. pid()) end
routes["/slow"] = function(h, client)
  require("scgi").sleep(tonumber(R.query(h).s) or 1)
  R.ok(client, "slow " .. pid() .. "\n")
end
routes["/version"] = function(_, client) R.ok(client, (os.getenv("CRASH_VERSION") or "?") .. "\n") end

return R.handler(routes)
