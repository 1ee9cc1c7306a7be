-- blocking.lua: what holds a worker, next to what does not. A C function that waits (luasql's
-- query, os.execute, io.popen's read) keeps the worker's thread inside it: no other request of
-- that worker runs until it returns, and neither --cpu-limit nor --request-timeout can stop it
-- meanwhile. The same wait through a cooperative socket (pg.lua) parks the request only.
-- Run: sh examples/services.sh examples/blocking.lua --workers 1   (needs lua-sql-postgres)
--   /luasql?s=1    SELECT pg_sleep(1) through luasql.postgres (libpq, blocking)
--   /pg?s=1        the same through examples/pg.lua (cooperative)
--   /execute?s=1   os.execute("sleep 1")
--   /popen?s=1     io.popen("sleep 1; echo done"):read("a")
--   /hello         answers at once, unless the worker is held
local pg = require "pg"
local scgi = require "scgi"

local port = tonumber(os.getenv("PG_PORT")) or 5432

local routes = {}

routes["/luasql"] = function(s)
  local env = require("luasql.postgres").postgres()
  local conn = assert(env:connect("postgres", "postgres", nil, "127.0.0.1", port))
  local cur = assert(conn:execute(("SELECT pg_sleep(%.3f)"):format(s))) -- the thread waits here
  cur:close()
  conn:close()
  env:close()
end

routes["/pg"] = function(s)
  local db = assert(pg.connect({ host = "127.0.0.1", port = port, user = "postgres" }))
  assert(db:query(("SELECT pg_sleep(%.3f)"):format(s))) -- the request waits here, not the thread
  db:keepalive()
end

routes["/execute"] = function(s) os.execute(("sleep %.3f"):format(s)) end

routes["/popen"] = function(s)
  local p = io.popen(("sleep %.3f; echo done"):format(s))
  p:read("a")
  p:close()
end

routes["/hello"] = function() end

return function(headers, client)
  local route = routes[scgi.path_info(headers)]
  if not route then return client:respond(404, { ["Content-Type"] = "text/plain" }, "no such route\n") end
  local t0 = scgi.now()
  route(tonumber(scgi.parse_query(headers.QUERY_STRING).s) or 1)
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("%s took %.3f s\n"):format(scgi.path_info(headers), scgi.now() - t0))
end
