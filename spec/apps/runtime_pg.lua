-- spec/apps/runtime_pg.lua: routes for spec/runtime_pg_spec.lua: examples/pg.lua (the pure-Lua
-- PostgreSQL client over socket.tcp) inside requests and tasks, against the spec's PostgreSQL on
-- 127.0.0.1:?port=. Answers are Lua source (runtime_common.answer).
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/apps/[^/]*$") or "."
package.path = here .. "/examples/?.lua;" .. package.path
local pg = require "pg"
local R = require "router"
local C = require "runtime_common"
local pack, answer = C.pack, C.answer

local routes = {}

routes["/hello"] = function(_, client) R.ok(client, "Hello world\n") end

local function connect(q)
  return pg.connect({ host = "127.0.0.1", port = tonumber(q.port), user = "postgres", database = "postgres",
    timeout = 10 })
end

-- ?port=&n=&s=: n tasks, each on its own connection runs SELECT pg_sleep(s), n; how long all took.
routes["/pg/sleep"] = function(headers, client)
  local q = C.query(headers)
  local s = tonumber(q.s) or 0.5
  local out, took = C.spawn_all(tonumber(q.n) or 10, function(i)
    local db = assert(connect(q))
    local rows = assert(db:query(("SELECT pg_sleep(%g), %d AS i"):format(s, i)))
    db:close()
    return rows[1].i, rows.tag
  end)
  answer(client, { r = out, elapsed = took })
end

-- ?port=: rows of several types and NULL, a table made and filled, an error, the connection still
-- usable after it, and a connection from the pool (db:keepalive).
routes["/pg/rows"] = function(headers, client)
  local q = C.query(headers)
  local db = assert(connect(q))
  local r = {}
  r.types = pack(db:query("SELECT 1 AS one, 'two''s'::text AS two, NULL AS nothing, 2.5::float8 AS half, " ..
    "true AS yes, 'é'::text AS accent"))
  r.series = pack(db:query("SELECT n, repeat('x', n) AS xs FROM generate_series(1, 3) AS n ORDER BY n"))
  r.create = pack(db:query("CREATE TEMP TABLE people (id int PRIMARY KEY, name text)"))
  r.insert = pack(db:query("INSERT INTO people VALUES (1, 'Ada'), (2, 'Grace'), (3, NULL)"))
  r.select = pack(db:query("SELECT id, name FROM people ORDER BY id"))
  r.error = pack(db:query("SELECT * FROM no_such_table"))
  r.after_error = pack(db:query("SELECT 42 AS answer"))
  r.multi = pack(db:query("SELECT 1 AS a; SELECT 2 AS b"))
  r.pid = db:query("SELECT pg_backend_pid() AS pid")[1].pid
  r.keepalive = pack(db:keepalive())
  local again = assert(connect(q))
  r.reused = again.sock:getreusedtimes()
  r.pid_again = again:query("SELECT pg_backend_pid() AS pid")[1].pid
  again:close()
  answer(client, r)
end

return R.handler(routes)
