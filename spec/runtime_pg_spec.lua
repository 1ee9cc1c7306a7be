-- spec/runtime_pg_spec.lua: examples/pg.lua, the pure-Lua PostgreSQL client, against a throwaway
-- PostgreSQL (initdb -A trust in a temporary directory, run as nobody when the spec runs as root,
-- on a free 127.0.0.1 port, its unix socket in that directory): with plain LuaSocket in the spec
-- process, and cooperatively inside the real scgi-lua on one worker (spec/apps/runtime_pg.lua).
-- Without Debian's PostgreSQL (/usr/lib/postgresql/*/bin) the cases are skipped, saying so.
local H = require "helper"

package.path = H.root .. "/examples/?.lua;" .. package.path
local pg = require "pg"

-- The newest PostgreSQL's bin directory, or nil.
local function pg_bin()
  local dir = H.sh_out("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1"):gsub("%s+$", "")
  if dir ~= "" and H.exists(dir .. "/initdb") and H.exists(dir .. "/postgres") then return dir end
end

-- The prefix that runs a PostgreSQL program as a user it accepts (it refuses root), and that
-- user's name.
local function as_user()
  if H.uid() ~= "0" then return "", nil end
  return "setpriv --reuid=nobody --regid=nogroup --clear-groups ", "nobody"
end

-- Makes and starts a cluster in a fresh directory; returns it (port, dir, stop()), or nil and why.
local function start_postgres()
  local bin = pg_bin()
  if not bin then return nil, "PostgreSQL is not installed (apt-get install postgresql)" end
  local prefix, user = as_user()
  if user and not H.have("setpriv") then return nil, "running as root without setpriv(1) to drop to nobody" end
  local dir = H.tmpdir() .. "/pg"
  local q = H.quote
  assert(os.execute("mkdir -p " .. q(dir) .. (user and (" && chown " .. user .. " " .. q(dir)) or "")))
  local rc = H.sh_out(("%s%s/initdb -D %s -A trust -U postgres -E UTF8 --locale=C --no-sync >%s 2>&1; echo $?")
    :format(prefix, bin, q(dir .. "/data"), q(dir .. "/initdb.log")))
  assert(tonumber(rc) == 0, "initdb failed:\n" .. (H.read_file(dir .. "/initdb.log") or ""))
  local port = H.free_port()
  -- the postmaster in the foreground, so that H.cleanup can stop it if the spec could not
  local proc = H.spawn(("exec %s%s/postgres -D %s -p %d -k %s -c listen_addresses=127.0.0.1 " ..
    "-c fsync=off -c max_connections=50"):format(prefix, bin, q(dir .. "/data"), port, q(dir)), dir, "postgres")
  H.wait_for(function()
    if not proc.alive() then error("postgres exited early:\n" .. proc.output()) end
    local db = pg.connect({ host = "127.0.0.1", port = port, timeout = 1 })
    if db then db:close() end
    return db ~= nil
  end, 20, "PostgreSQL to accept connections")
  proc.port, proc.dir = port, dir
  function proc.stop()
    os.execute(("%s%s/pg_ctl -D %s -m immediate stop >/dev/null 2>&1"):format(prefix, bin, q(dir .. "/data")))
    pcall(proc.wait, 10)
  end
  return proc
end

describe("examples/pg.lua against a throwaway PostgreSQL", function()
  local db_proc, why_not, srv
  setup(function()
    db_proc, why_not = start_postgres()
    if db_proc then srv = H.start("runtime_pg.lua", { workers = 1 }) end
  end)
  teardown(function()
    local rc = srv and srv.alive() and srv.stop()
    if db_proc then db_proc.stop() end
    H.cleanup()
    if srv then assert.equal(0, rc) end
  end)

  -- Skips the case, saying why, when there is no PostgreSQL here.
  local function need_postgres()
    if not db_proc then pending("skipped: " .. tostring(why_not)) end
  end

  it("works with plain LuaSocket outside scgi-lua: rows of strings, NULL absent, errors as nil, message",
    function()
      need_postgres()
      local db = assert(pg.connect({ host = "127.0.0.1", port = db_proc.port, user = "postgres" }))
      local rows = assert(db:query("SELECT 1 AS one, NULL AS nothing, 'x' AS x"))
      assert.same({ "one", "nothing", "x" }, rows.columns)
      assert.equal("SELECT 1", rows.tag)
      assert.same({ { one = "1", x = "x" } }, { table.unpack(rows) })
      local none, err, code = db:query("SELECT * FROM nope")
      assert.is_nil(none)
      assert.equal('ERROR: relation "nope" does not exist', err)
      assert.equal("42P01", code)
      assert.equal("ok", db:query("SELECT 'ok' AS s")[1].s)
      assert.equal("UTF8", db.parameters.server_encoding)
      db:close()
      local bad, why = pg.connect({ host = "127.0.0.1", port = db_proc.port, user = "postgres", database = "nodb" })
      assert.is_nil(bad)
      assert.equal('FATAL: database "nodb" does not exist', why)
    end)

  it("ten SELECT pg_sleep(0.5) in tasks of one request on one worker end in < 2 s; /hello meanwhile",
    function()
      need_postgres()
      local t0 = H.now()
      local finish = H.start_call(srv.addr, "/pg/sleep", { port = db_proc.port, n = 10, s = 0.5 })
      H.sleep(0.2)
      local t1 = H.now()
      H.hello_ok(srv.addr)
      assert.is_true(H.now() - t1 < 0.3, ("/hello took %.2f s"):format(H.now() - t1))
      local r = finish()
      for i = 1, 10 do assert.same({ n = 3, true, tostring(i), "SELECT 1" }, r.r[i]) end
      assert.is_true(r.elapsed >= 0.5, "the queries did not sleep: " .. r.elapsed)
      local took = H.now() - t0
      -- one after the other: 10 x 0.5 s
      assert.is_true(took < 2, ("ten 0.5 s queries took %.2f s: they did not overlap"):format(took))
    end)

  it("a query's rows come back right inside scgi-lua; an error leaves the connection usable; the pool",
    function()
      need_postgres()
      local r = H.call(srv.addr, "/pg/rows", { port = db_proc.port })
      local types = r.types[1]
      assert.same({ "one", "two", "nothing", "half", "yes", "accent" }, types.columns)
      assert.same({ one = "1", two = "two's", half = "2.5", yes = "t", accent = "é" }, types[1])
      local series = r.series[1]
      assert.equal("SELECT 3", series.tag)
      for n = 1, 3 do assert.same({ n = tostring(n), xs = ("x"):rep(n) }, series[n]) end
      assert.equal("CREATE TABLE", r.create[1].tag)
      assert.equal("INSERT 0 3", r.insert[1].tag)
      assert.same({ id = "1", name = "Ada" }, r.select[1][1])
      assert.same({ id = "2", name = "Grace" }, r.select[1][2])
      assert.same({ id = "3" }, r.select[1][3])
      assert.same({ n = 3, nil, 'ERROR: relation "no_such_table" does not exist', "42P01" }, r.error)
      assert.equal("42", r.after_error[1][1].answer)
      assert.same({ "b" }, r.multi[1].columns) -- the last statement's rows
      assert.equal("2", r.multi[1][1].b)
      assert.same({ n = 1, 1 }, r.keepalive)
      assert.equal(1, r.reused)
      assert.equal(r.pid, r.pid_again) -- the same server process: the same connection
    end)
end)
