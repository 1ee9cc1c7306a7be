-- soak/run.lua: the soak test (make soak). Runs scgi-lua with 2 workers behind a private nginx
-- for SOAK_SECONDS (default 600) of mixed traffic from SOAK_CLIENTS (default 6) client processes
-- (soak/client.lua): valid requests, malformed, oversize (413, 431), aborted, slow, handler errors
-- (500) and sleeps, directly over SCGI and through nginx. Every SOAK_SAMPLE seconds (default 5) it
-- samples the server's VmRSS and descriptor count. At the end it checks that every request with
-- a known answer got it, that RSS and descriptors stayed flat after warm-up, that no worker died,
-- and prints a summary; the exit status is 0 only if every check passed.
--
--   SOAK_SECONDS=60 lua5.4 soak/run.lua      (from the checkout; SCGI_LUA picks the program)
--
-- Everything is on a temporary unix socket and a loopback port; the temporary directory is removed
-- unless the run failed or SOAK_KEEP=1 (its path is printed then).
package.path = "./spec/?.lua;" .. package.path
local H = require "helper"
local socket = require "socket"

local SECONDS = tonumber(os.getenv("SOAK_SECONDS") or "600")
local CLIENTS = tonumber(os.getenv("SOAK_CLIENTS") or "6")
local SAMPLE = tonumber(os.getenv("SOAK_SAMPLE") or (SECONDS >= 120 and "5" or "1"))
local KEEP = os.getenv("SOAK_KEEP") == "1"
-- Samples from the warm-up (the first fifth, at least 60 s: the allocator's arenas and the Lua
-- states grow for about a minute) are not judged; the rest is split in thirds. Runs shorter than
-- 180 s are too short to judge flatness: those checks are skipped (and said so).
local WARMUP = math.max(SECONDS * 0.2, 60)
local JUDGE_FLAT = SECONDS >= 180
local WORKERS = 2

local function say(fmt, ...) io.stdout:write((fmt):format(...), "\n") io.stdout:flush() end
local function sh_out(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end
local function mib(kb) return kb and ("%.1f MiB"):format(kb / 1024) or "?" end

local function rss_kb(pid)
  local s = H.read_file("/proc/" .. pid .. "/status")
  return s and tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- The stats endpoint's JSON, reduced to what the soak checks.
local function get_stats(path)
  local s = H.connect(path, 5)
  if not s then return nil end
  s:send("GET / HTTP/1.0\r\n\r\n")
  local raw = s:receive("*a")
  s:close()
  local body = raw and raw:match("\r\n\r\n(.*)$")
  if not body then return nil end
  local st = { workers = {} }
  local list = body:match('"workers":%[(.-)%],"total"') or ""
  for wid, req, err, mem in list:gmatch('{"id":(%d+),"requests":(%d+),"errors":(%d+),.-"lua_memory":(%d+)') do
    st.workers[#st.workers + 1] = { id = tonumber(wid), requests = tonumber(req), errors = tonumber(err),
      lua_memory = tonumber(mem) }
  end
  local total = body:match('"total":(%b{})') or ""
  st.requests = tonumber(total:match('"requests":(%d+)'))
  st.errors = tonumber(total:match('"errors":(%d+)'))
  st.connections = tonumber(total:match('"connections":(%d+)'))
  return st
end

local checks, failed = {}, false
local function check(ok, what)
  checks[#checks + 1] = (ok and "  ok    " or "  FAIL  ") .. what
  if not ok then failed = true end
  return ok
end

if sh_out("command -v nginx") == "" then
  io.stderr:write("soak: nginx is not installed (apt-get install nginx-light)\n")
  os.exit(2)
end

local started_at = H.now()
local dir = H.tmpdir()
local stats_path = dir .. "/stats.sock"
local srv = H.start(H.root .. "/soak/app.lua", { dir = dir, workers = WORKERS, options = {
  stats = stats_path, ["max-body-size"] = "1M", ["max-header-size"] = "8K", timeout = "2",
  ["request-timeout"] = "30", ["max-connections"] = "4096" } })
local ng = H.nginx(srv.addr)
say("soak: %s (pid %d, %d workers) behind nginx on 127.0.0.1:%d; %d clients for %d s; samples every %g s",
  H.program, srv.pid, WORKERS, ng.port, CLIENTS, SECONDS, SAMPLE)
say("soak: directory %s", dir)

-- a first answer each way, and the idle baseline
assert(H.request(srv.addr, "GET", "/hello?n=0") == 200, "the server does not answer /hello")
assert(H.http(ng.port, "GET", "/hello?n=0") == 200, "nginx does not answer /hello")
H.sleep(0.5)
local fds_idle_start, rss_start = H.fd_count(srv.pid), rss_kb(srv.pid)

local clients = {}
for i = 1, CLIENTS do
  local out = dir .. "/client" .. i .. ".tally"
  local cmd = ("exec lua5.4 %s %d %g %s %d %s"):format(H.quote(H.root .. "/soak/client.lua"), i, SECONDS,
    H.quote(srv.addr), ng.port, H.quote(out))
  clients[i] = H.spawn(cmd, dir, "client" .. i)
  clients[i].out = out
end

-- sample until every client is done (bounded: SECONDS + 60)
local samples = {}
local t0 = H.now()
local next_sample, next_report = t0, t0 + 60
local csv = assert(io.open(dir .. "/samples.csv", "w"))
csv:write("seconds,rss_kb,fds\n")
while true do
  local now = H.now()
  if now >= next_sample then
    local alive = srv.alive()
    local sample = { t = now - t0, rss = alive and rss_kb(srv.pid), fds = alive and H.fd_count(srv.pid), alive = alive }
    samples[#samples + 1] = sample
    csv:write(("%.1f,%s,%s\n"):format(sample.t, sample.rss or "", sample.fds or ""))
    csv:flush()
    next_sample = next_sample + SAMPLE
    if not alive then break end
  end
  if now >= next_report then
    local st = get_stats(stats_path)
    local last = samples[#samples]
    say("soak: %4d s  rss %s  fds %d  requests %s", math.floor(now - t0), mib(last.rss), last.fds or -1,
      st and st.requests or "?")
    next_report = next_report + 60
  end
  local running = 0
  for _, c in ipairs(clients) do if c.alive() then running = running + 1 end end
  if running == 0 or now - t0 > SECONDS + 60 then break end
  H.sleep(0.2)
end
csv:close()
local traffic_seconds = H.now() - t0

-- clients still running past the bound are stopped (and counted as a failure)
local stuck = 0
for _, c in ipairs(clients) do
  if c.alive() then
    stuck = stuck + 1
    c.kill("KILL")
  end
end

-- once quiet, the server's descriptors go back to the idle baseline
local alive = srv.alive()
local fds_idle_end
if alive then
  local deadline = H.now() + 10
  repeat
    fds_idle_end = H.fd_count(srv.pid)
    if fds_idle_end == fds_idle_start then break end
    H.sleep(0.2)
  until H.now() > deadline
end
local rss_end = alive and rss_kb(srv.pid)
local stats = alive and get_stats(stats_path)

-- the clients' tallies
local kinds_order = { "valid", "malformed", "oversize", "aborted", "slow", "error", "sleep" }
local tally, failures, nfail_total = {}, {}, 0
for _, c in ipairs(clients) do
  local chunk = loadfile(c.out)
  local okr, r = pcall(chunk or error)
  if okr and type(r) == "table" then
    for k, t in pairs(r.tally) do
      local a = tally[k] or { sent = 0, ok = 0, failed = 0, max_seconds = 0 }
      a.sent, a.ok, a.failed = a.sent + t.sent, a.ok + t.ok, a.failed + t.failed
      if t.max_seconds >= a.max_seconds then a.max_seconds, a.slowest = t.max_seconds, t.slowest end
      tally[k] = a
    end
    for _, f in ipairs(r.failures) do
      if #failures < 20 then failures[#failures + 1] = "client " .. r.id .. ": " .. f end
    end
    nfail_total = nfail_total + r.nfailures
  else
    check(false, "client " .. c.name .. " left no tally (exit " .. tostring(c.alive() and "running" or c.wait(1)) ..
      "): " .. c.output():sub(1, 300))
  end
end

-- the logs
local log = srv.log
local function count(file, pattern)
  return tonumber(sh_out("grep -c -F -- " .. H.quote(pattern) .. " " .. H.quote(file) .. " 2>/dev/null")) or 0
end
local log_counts = {
  { "handler errors", count(log, ": handler error: ") },
  { "400 answers", count(log, ": 400 Bad Request: ") },
  { "413 answers", count(log, ": 413 Content Too Large: ") },
  { "431 answers", count(log, ": 431 Request Header Fields Too Large: ") },
  { "inactivity timeouts", count(log, " s while ") },
  { "closed before the header block", count(log, "closed before the header block was complete") },
}
local unexpected_patterns = { "unprotected Lua error", "cannot accept", "out of memory", "AddressSanitizer",
  "runtime error:", "Segmentation", "cannot start the handler", "request budget", "503 Service Unavailable" }
local unexpected = {}
for _, p in ipairs(unexpected_patterns) do
  local n = count(log, p)
  if n > 0 then unexpected[#unexpected + 1] = ("%d x %q"):format(n, p) end
end
local ng_text_file = (ng.log:gsub("nginx%.log$", "error.log"))
local ng_counts = {
  crit = count(ng_text_file, "[crit]") + count(ng_text_file, "[alert]") + count(ng_text_file, "[emerg]"),
  reset = count(ng_text_file, "reset by peer) while reading response header from upstream") +
    count(ng_text_file, "upstream prematurely closed"),
  errors = count(ng_text_file, "[error]"),
}

-- stop: SIGTERM, exit status 0
local exit_status
if alive then
  srv.kill("TERM")
  exit_status = srv.wait(40)
end
ng.stop()

-- ---- checks ----
check(alive, "the server process stayed alive for the whole run")
check(stuck == 0, ("every client finished on time (%d stuck)"):format(stuck))
for _, k in ipairs(kinds_order) do
  local t = tally[k]
  check(t and t.sent > 0 and t.failed == 0, ("%s: every request %s (%d of %d)"):format(k,
    k == "aborted" and "could connect" or "got its exact answer", t and t.ok or 0, t and t.sent or 0))
end
check(#unexpected == 0, "no unexpected server log line" .. (#unexpected > 0 and (": " .. table.concat(unexpected, ", ")) or ""))
check(ng_counts.crit == 0 and ng_counts.reset == 0, ("nginx saw no reset or premature close from scgi-lua (%d), no crit/alert (%d)"):format(
  ng_counts.reset, ng_counts.crit))

-- flatness: the samples after warm-up, in thirds
local after = {}
for _, s in ipairs(samples) do if s.t >= WARMUP and s.rss then after[#after + 1] = s end end
local third = #after // 3
local function max_of(from, to, field)
  local m
  for i = from, to do m = math.max(m or 0, after[i][field]) end
  return m
end
local rss_first, rss_last, fds_first, fds_last
if not JUDGE_FLAT then
  checks[#checks + 1] = "  skip  RSS and descriptors flat under traffic: the run is too short to judge (SOAK_SECONDS >= 180)"
elseif third >= 1 then
  rss_first, rss_last = max_of(1, third, "rss"), max_of(#after - third + 1, #after, "rss")
  fds_first, fds_last = max_of(1, third, "fds"), max_of(#after - third + 1, #after, "fds")
  check(rss_last <= rss_first * 1.10 or rss_last - rss_first <= 2048, ("RSS flat after warm-up: last third's max %s vs first third's %s (allowed: +10%% or +2 MiB)"):format(
    mib(rss_last), mib(rss_first)))
  check(fds_last <= fds_first + 50, ("descriptors flat under traffic: last third's max %d vs first third's %d (allowed: +50)"):format(fds_last, fds_first))
else
  check(false, "too few samples after warm-up to judge RSS and descriptors (" .. #after .. ")")
end
check(fds_idle_end == fds_idle_start, ("descriptors back to the idle baseline after the traffic: %s, baseline %d"):format(
  tostring(fds_idle_end), fds_idle_start))
local wk = stats and stats.workers or {}
local wk_desc = {}
for _, w in ipairs(wk) do wk_desc[#wk_desc + 1] = ("worker %d: %d requests, Lua %s"):format(w.id, w.requests, mib(w.lua_memory / 1024)) end
local all_served = #wk == WORKERS
for _, w in ipairs(wk) do all_served = all_served and w.requests > 0 end
check(all_served, ("the stats endpoint shows %d workers, each serving (%s)"):format(#wk, table.concat(wk_desc, "; ")))
check(exit_status == 0, "SIGTERM stopped the server with status 0 (" .. tostring(exit_status) .. ")")

-- ---- summary ----
say("")
say("==== scgi-lua soak summary ====")
say("run: %.0f s of traffic (%d s asked), %d clients, %d workers, %s", traffic_seconds, SECONDS, CLIENTS, WORKERS, H.program)
say("%-10s %10s %10s %8s %8s  %s", "kind", "sent", "ok", "failed", "max s", "(slowest variant)")
local tot = { sent = 0, ok = 0, failed = 0 }
for _, k in ipairs(kinds_order) do
  local t = tally[k] or { sent = 0, ok = 0, failed = 0, max_seconds = 0 }
  say("%-10s %10d %10d %8d %8.2f  (%s)", k, t.sent, t.ok, t.failed, t.max_seconds, t.slowest or "-")
  tot.sent, tot.ok, tot.failed = tot.sent + t.sent, tot.ok + t.ok, tot.failed + t.failed
end
say("%-10s %10d %10d %8d", "total", tot.sent, tot.ok, tot.failed)
say("rate: %.0f client operations/s; server: %s requests on %s connections, %s errors (stats endpoint)",
  tot.sent / traffic_seconds, stats and stats.requests or "?", stats and stats.connections or "?", stats and stats.errors or "?")
local lc = {}
for _, c in ipairs(log_counts) do lc[#lc + 1] = c[2] .. " " .. c[1] end
say("server log: %s", table.concat(lc, ", "))
say("nginx error log: %d [error] lines (client aborts and 4xx/5xx upstream answers are expected)", ng_counts.errors)
say("RSS: start %s, first third after warm-up max %s, last third max %s, end %s",
  mib(rss_start), mib(rss_first), mib(rss_last), mib(rss_end))
local by_minute = {}
for _, s in ipairs(samples) do
  local m = math.floor(s.t / 60)
  if s.rss and not by_minute[m + 1] then by_minute[m + 1] = ("%.1f"):format(s.rss / 1024) end
end
say("RSS by minute (MiB): %s", table.concat(by_minute, " "))
say("fds: idle start %d, idle end %s; under traffic first third max %s, last third max %s",
  fds_idle_start, tostring(fds_idle_end), tostring(fds_first), tostring(fds_last))
if #failures > 0 then
  say("first failures (%d in all):", nfail_total)
  for _, f in ipairs(failures) do say("  %s", f) end
end
say("checks:")
for _, c in ipairs(checks) do say("%s", c) end
say("VERDICT: %s (%.0f s in all)", failed and "FAIL" or "PASS", H.now() - started_at)

if failed or KEEP then
  say("soak: kept %s (scgi.log, samples.csv, client tallies); nginx's logs: %s", dir, ng.log:match("^(.*)/"))
  for _, c in ipairs(clients) do if c.alive() then c.kill("KILL") end end
else
  H.cleanup()
end
os.exit(failed and 1 or 0)
