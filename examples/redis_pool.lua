-- redis_pool.lua: Debian's lua-redis, unchanged, with scgi-lua's connection pool. redis.connect
-- opens its socket with require("socket").tcp(), which inside a request is cooperative: the
-- connect and every command park this request only. setkeepalive hands the connection to the
-- worker's pool instead of closing it; the next redis.connect to the same host and port takes it.
-- lua-redis is installed for Lua 5.1-5.3 only: LUA_PATH="/usr/share/lua/5.3/?.lua;;"
-- Run: sh examples/services.sh examples/redis_pool.lua --workers 1   (it sets LUA_PATH)
--   curl http://127.0.0.1:8080/   ->  hits 3 (this connection's reuse 2)
-- POOL_SIZE (default 30) bounds the idle connections kept.
local redis = require "redis"
local scgi = require "scgi"

local port = tonumber(os.getenv("REDIS_PORT")) or 6379
local pool_size = tonumber(os.getenv("POOL_SIZE")) or 30

return function(headers, client)
  -- lua-redis raises when it cannot connect or the connection breaks
  local ok, db = pcall(redis.connect, "127.0.0.1", port, 2) -- host, port, timeout in seconds
  if not ok then
    return client:respond(502, { ["Content-Type"] = "text/plain" }, tostring(db) .. "\n")
  end
  local sock = db.network.socket
  local reused = sock:getreusedtimes() -- 0: a new connection; n: taken from the pool n times
  local hits = db:incr("hits")
  local hold = tonumber(scgi.parse_query(headers.QUERY_STRING).hold)
  if hold then scgi.sleep(hold) end -- ?hold=S keeps the connection busy S s longer (to load the pool)
  -- back to the pool: kept up to 60 s idle, at most pool_size idle connections under host:port
  -- (nil, "unread data in buffer" when a reply is still unread: then close it)
  if not sock:setkeepalive(60, pool_size) then sock:close() end
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("hits %d (this connection's reuse %d)\n"):format(hits, reused))
end
