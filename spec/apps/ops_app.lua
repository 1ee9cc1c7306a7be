-- spec/apps/ops_app.lua: the app of the operations specs (logs, stats, privileges, systemd, pid file).
-- With OPS_SHOW_UID set it writes its Uid and Gid lines to stderr while loading, so a spec can tell
-- which user the app was loaded as.
local function status_lines()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return s:match("Uid:[^\n]*") .. "\n" .. s:match("Gid:[^\n]*") .. "\n"
end

local R = require "router"
local ok, query = R.ok, R.query

if os.getenv("OPS_SHOW_UID") then
  io.stderr:write("OPS LOAD ", (status_lines():gsub("\n", " ")), "\n")
  io.stderr:flush()
end

local routes = {}

routes["/ok"] = function(_, client) ok(client, "ok\n") end

routes["/missing"] = function(_, client)
  client:write("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such thing\n")
end

routes["/error"] = function() error("ops boom") end

-- Waits ?ms= milliseconds without holding the worker, then answers.
routes["/slow"] = function(headers, client)
  require("scgi").sleep((tonumber(query(headers).ms) or 100) / 1000)
  ok(client, "slept\n")
end

routes["/echo"] = function(_, client) ok(client, client:read("a") or "") end

-- The user the worker runs as, per request.
routes["/uid"] = function(_, client) ok(client, status_lines()) end

-- An environment variable as the handler sees it, "(nil)" when unset.
routes["/env"] = function(headers, client)
  ok(client, tostring(os.getenv(query(headers).name or "") or "(nil)") .. "\n")
end

return R.handler(routes, function(_, client)
  client:write("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnot found\n")
end)
