-- offload_worker.lua: the other half of examples/offload.lua, run with plain lua5.4 (outside
-- scgi-lua, where blocking is fine): takes jobs from redis one at a time, runs the blocking call
-- (a luasql.postgres query, Debian's lua-sql-postgres) and pushes the answer back.
--   REDIS_PORT=6390 PG_PORT=5440 LUA_PATH="/usr/share/lua/5.3/?.lua;;" lua5.4 examples/offload_worker.lua
local redis = require "redis"
local luasql = require "luasql.postgres"

local db = redis.connect("127.0.0.1", tonumber(os.getenv("REDIS_PORT")) or 6379)
local env = luasql.postgres()
local pg = assert(env:connect("postgres", "postgres", nil, "127.0.0.1", tonumber(os.getenv("PG_PORT")) or 5432))

while true do
  local job = db:blpop("offload:jobs", 0) -- { key, "ID SECONDS" }: waits for the next job
  local id, s = job[2]:match("^(%d+) (%S+)$")
  local cur, err = pg:execute(("SELECT pg_sleep(%.3f), clock_timestamp()::text AS at"):format(tonumber(s) or 0))
  local answer = cur and ("pg_sleep(%s) done at %s"):format(s, cur:fetch({}, "a").at) or ("failed: " .. err)
  if cur then cur:close() end
  db:rpush("offload:reply:" .. id, answer)
  db:expire("offload:reply:" .. id, 60) -- nobody waits any more after the handler's 30 s
end
