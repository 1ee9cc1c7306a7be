-- offload.lua: blocking work moved out of scgi-lua. The handler queues a job in redis and waits
-- for its answer with BLPOP, a wait that parks this request only; examples/offload_worker.lua, a
-- plain lua5.4 process, takes the jobs and runs the blocking call (luasql here). Run as many of
-- those processes as blocking calls you want at once: they are what waits, not scgi-lua's workers.
-- Run: sh examples/services.sh examples/offload.lua --workers 1
--      REDIS_PORT=6390 PG_PORT=5440 LUA_PATH="/usr/share/lua/5.3/?.lua;;" lua5.4 examples/offload_worker.lua
--   curl 'http://127.0.0.1:8080/?s=1'   ->  job 1: pg_sleep(1) done at 2026-12-02 00:41:30.788601+00
local redis = require "redis"
local scgi = require "scgi"

local port = tonumber(os.getenv("REDIS_PORT")) or 6379

return function(headers, client)
  local s = tonumber(scgi.parse_query(headers.QUERY_STRING).s) or 1
  local db = redis.connect("127.0.0.1", port)
  local id = db:incr("offload:last-id")
  db:rpush("offload:jobs", ("%d %g"):format(id, s))
  local reply = db:blpop("offload:reply:" .. id, 30) -- { key, value }, or nil after 30 s
  if not db.network.socket:setkeepalive() then db.network.socket:close() end
  if not reply then
    return client:respond(504, { ["Content-Type"] = "text/plain" }, "no worker answered job " .. id .. "\n")
  end
  client:respond(200, { ["Content-Type"] = "text/plain" }, ("job %d: %s\n"):format(id, reply[2]))
end
