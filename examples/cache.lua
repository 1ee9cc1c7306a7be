-- cache.lua: a value from another service, refreshed in the background every REFRESH seconds
-- (default 5) and served from memory: requests never wait for the service. The timers are set
-- when the worker loads this file (scgi.timer and scgi.every work at load time, once per worker).
-- Their runs are tasks outside any request, with the whole cooperative API (socket.http here).
-- On a reload (SIGHUP) or a stop (SIGTERM) a pending timer runs at once with premature = true.
-- With --shared cache:1M, the workers share one copy and one fetch per period; without it, each
-- worker keeps and refreshes its own.
-- Run: sh examples/services.sh examples/cache.lua --workers 2 --shared cache:1M
--   curl http://127.0.0.1:8080/
--   /rates after 0.5 s (answer 3), fetched 1 s ago by worker 0, served by worker 1
local http = require "socket.http"
local scgi = require "scgi"

local upstream = os.getenv("HTTP_URL") or "http://127.0.0.1:8081"
local period = tonumber(os.getenv("REFRESH")) or 5
local shared = scgi.shared.cache -- nil without --shared cache:SIZE
local mine = {}                  -- this worker's copy when nothing is shared
local worker = scgi.worker().id

local function put(key, value)
  if shared then shared:set(key, value) else mine[key] = value end
end

local function cached(key)
  if shared then return shared:get(key) end
  return mine[key]
end

local function refresh(premature)
  if premature then -- the worker stops, or this state is replaced by a reload: fetch nothing
    io.stderr:write(("cache: worker %d: timer ended early (premature)\n"):format(worker))
    return
  end
  -- shared: the first worker to take the period's lock fetches, the others keep what is there
  if shared and not shared:add("lock", worker, period * 0.9) then return end
  local body, code = http.request(upstream .. "/rates?delay=0.5") -- parks this timer's task only
  if body and code == 200 then
    put("value", body)
    put("at", os.time())
    put("by", worker)
  else
    io.stderr:write(("cache: worker %d: refresh failed: %s\n"):format(worker, tostring(code)))
  end
end

assert(scgi.timer(0, refresh))        -- a first fill as soon as this worker's loop runs
assert(scgi.every(period, refresh))   -- then every period (counted from the end of the last run)

return function(headers, client)
  local value = cached("value")
  if not value then
    return client:respond(503, { ["Content-Type"] = "text/plain", ["Retry-After"] = 1 }, "warming up\n")
  end
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("%s, fetched %d s ago by worker %d, served by worker %d\n"):format((value:gsub("%s+$", "")),
      os.time() - cached("at"), cached("by"), worker))
end
