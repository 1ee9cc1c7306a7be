-- pg_query.lua: PostgreSQL from a handler through examples/pg.lua, a pure-Lua client over
-- require("socket").tcp(): inside a request every wait (connect, the query, the rows) parks this
-- request only. db:keepalive() puts the logged-in connection in the worker's pool; the next
-- pg.connect with the same user, host, port and database takes it and skips the start-up.
-- pg.lua speaks trust authentication only (no password): see its header.
-- Run: sh examples/services.sh examples/pg_query.lua --workers 1
--   curl 'http://127.0.0.1:8080/?sleep=1'   ->  backend 18261 (connection reused 0), slept 1 s
local pg = require "pg" -- examples/pg.lua: the app's directory is first on package.path
local scgi = require "scgi"

local port = tonumber(os.getenv("PG_PORT")) or 5432

local function text(client, status, s)
  client:respond(status, { ["Content-Type"] = "text/plain" }, s .. "\n")
end

return function(headers, client)
  local sleep = tonumber(scgi.parse_query(headers.QUERY_STRING).sleep) or 0
  local db, err = pg.connect({ host = "127.0.0.1", port = port, user = "postgres",
    database = "postgres", timeout = 5 })
  if not db then return text(client, 502, err) end
  local reused = db.sock:getreusedtimes()
  -- the simple query protocol has no parameters: only a number goes into this SQL
  local rows, qerr = db:query(("SELECT pg_backend_pid() AS pid, pg_sleep(%.3f)"):format(sleep))
  if not rows then
    db:close()
    return text(client, 500, qerr)
  end
  -- idle up to 60 s, at most 10 idle connections for this database
  if not db:keepalive(60, 10) then db:close() end
  text(client, 200, ("backend %s (connection reused %d), slept %g s"):format(rows[1].pid, reused, sleep))
end
