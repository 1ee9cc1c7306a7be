-- spec/metrics_spec.lua: /metrics on the --stats address in Prometheus' text format, read by a real
-- Prometheus parser (Debian's python3-prometheus-client), and the access log as JSON lines.
local H = require "helper"

local PY = "/usr/bin/python3" -- Debian's, with python3-prometheus-client

local PARSE = [[
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("%s\t%s\t%s\t%s" % (f.type, s.name, labels, repr(float(s.value))))
]]

-- The samples of a scrape, through the parser: { [name] = { {labels=..., value=...}, ... } }.
local function scrape(dir, sock)
  H.write_file(dir .. "/parse.py", PARSE)
  local _, ctype, body = H.get_stats(sock, "/metrics")
  assert.equal("text/plain; version=0.0.4", ctype)
  H.write_file(dir .. "/metrics.txt", body)
  local out = H.sh_out(PY .. " " .. H.quote(dir .. "/parse.py") .. " < " .. H.quote(dir .. "/metrics.txt") .. " 2>&1; echo rc=$?")
  assert.truthy(out:find("rc=0", 1, true), "the Prometheus parser failed:\n" .. out)
  local m = {}
  for kind, name, labels, value in out:gmatch("(%a+)\t([%w_]+)\t([^\t]*)\t([^\n]+)\n") do
    m[name] = m[name] or { type = kind }
    local l = {}
    for k, v in labels:gmatch("([%w_]+)=([^,]*)") do l[k] = v end
    table.insert(m[name], { labels = l, value = tonumber(value) })
  end
  return m
end

local function sum(m, name, where)
  local n = 0
  for _, s in ipairs(m[name] or {}) do
    local ok = true
    for k, v in pairs(where or {}) do ok = ok and s.labels[k] == v end
    if ok then n = n + s.value end
  end
  return n
end

describe("/metrics", function()
  after_each(H.cleanup)

  it("is read by Prometheus' parser and counts what happened", function()
    if not H.sh_out(PY .. " -c 'import prometheus_client' 2>&1; echo $?"):find("^0") then
      pending("no python3-prometheus-client")
    end
    local dir = H.tmpdir()
    local sock = dir .. "/stats.sock"
    local srv = H.start("upkeep.lua", { dir = dir, workers = 2,
      args = { "--stats", sock, "--cpu-limit", "0.5" } })
    for _ = 1, 7 do H.hello_ok(srv.addr) end
    for _ = 1, 3 do assert.equal(404, (H.scgi_get(srv.addr, "/missing"))) end
    for _ = 1, 2 do assert.equal(500, (H.scgi_get(srv.addr, "/error"))) end
    assert.equal(500, (H.scgi_get(srv.addr, "/loop"))) -- stopped by --cpu-limit
    srv.kill("HUP")
    H.wait_for(function() return H.count(srv.output(), "reloaded") == 2 end, 5, "the reload")
    -- a request's figures are added as its connection closes, which the client may see first
    local m = H.wait_for(function()
      local m = scrape(dir, sock)
      return sum(m, "scgi_request_duration_seconds_count") >= 13 and
        sum(m, "scgi_connections_total") >= 13 and sum(m, "scgi_open_connections") == 0 and m
    end, 5, "the figures of 13 requests")
    assert.equal("counter", m.scgi_requests_total.type)
    assert.equal(7, sum(m, "scgi_requests_total", { class = "2xx" }))
    assert.equal(3, sum(m, "scgi_requests_total", { class = "4xx" }))
    assert.equal(3, sum(m, "scgi_requests_total", { class = "5xx" }))
    assert.equal("histogram", m.scgi_request_duration_seconds_count.type)
    assert.equal(13, sum(m, "scgi_request_duration_seconds_count"))
    assert.equal(13, sum(m, "scgi_request_duration_seconds_bucket", { le = "+Inf" }))
    assert.is_true(sum(m, "scgi_request_duration_seconds_sum") > 0.4) -- the loop ran 0.5 s
    assert.equal(3, sum(m, "scgi_errors_total"))
    assert.equal(1, sum(m, "scgi_stops_total", { reason = "cpu_limit" }))
    assert.equal(0, sum(m, "scgi_stops_total", { reason = "request_timeout" }))
    assert.equal(13, sum(m, "scgi_connections_total"))
    assert.is_true(sum(m, "scgi_sent_bytes_total") > 0 and sum(m, "scgi_received_bytes_total") > 0)
    assert.equal("gauge", m.scgi_lua_memory_bytes.type)
    assert.equal(2, #m.scgi_lua_memory_bytes) -- one per worker
    assert.is_true(sum(m, "scgi_lua_memory_bytes") > 0)
    assert.equal(0, sum(m, "scgi_open_connections") - 0) -- none open between requests
    assert.equal(2, sum(m, "scgi_reloads_total", { result = "ok" }))
    assert.equal(1, sum(m, "scgi_last_reload_success"))
    assert.is_true(sum(m, "scgi_last_reload_timestamp_seconds") > os.time() - 60)
    assert.equal(1, sum(m, "scgi_processes"))
    assert.equal(0, sum(m, "scgi_respawns_total"))
    for _, name in ipairs({ "scgi_tasks", "scgi_timers", "scgi_pooled_connections", "scgi_recycles_total",
      "scgi_active_requests", "scgi_crash_backoff_seconds", "scgi_upgrades_total", "scgi_info",
      "scgi_uptime_seconds", "scgi_refused_total", "scgi_bad_heads_total", "scgi_pool_new_total",
      "scgi_pool_reused_total" }) do
      assert.truthy(m[name], name .. " is missing")
    end
    assert.equal(0, srv.stop())
  end)
end)

describe("--access-log-format json", function()
  after_each(H.cleanup)

  it("writes one JSON object per request, with the text format's fields", function()
    local dir = H.tmpdir()
    local log = dir .. "/access.log"
    local srv = H.start("upkeep.lua", { dir = dir, args = { "--access-log", log, "--access-log-format", "json" } })
    H.hello_ok(srv.addr)
    assert.equal(404, (H.scgi_get(srv.addr, "/missing?q=\"x\"")))
    assert.equal(0, srv.stop())
    local lines = H.lines(H.read_file(log))
    assert.equal(2, #lines)
    local a, b = H.json_decode(lines[1]), H.json_decode(lines[2])
    assert.equal("GET", a.method)
    assert.equal("/hello", a.uri)
    assert.equal(200, a.status)
    assert.equal(44 + 12, a.bytes_out) -- the head and the body R.ok writes
    assert.is_true(a.ms >= 0 and a.bytes_in > 0 and a.worker == 0 and type(a.id) == "number")
    assert.truthy(a.time:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), a.time)
    assert.equal('/missing?q="x"', b.uri) -- escaped in the JSON, as sent in the request
    assert.equal(404, b.status)
  end)

  it("--processes 2 and a crash: request ids stay unique, and each line names its process", function()
    local dir = H.tmpdir()
    local log = dir .. "/access.log"
    local srv = H.start("crash.lua", { dir = dir, args = { "--processes", "2", "--access-log", log,
      "--access-log-format", "json" } })
    local pids = {}
    -- requests 8 at a time: one at a time, the first idle process takes them all (--accept direct)
    local function batch()
      local socks = {}
      for i = 1, 8 do socks[i] = H.send_get(srv.addr, "/pid", 5) end
      for _, c in ipairs(socks) do
        local status, _, body = H.parse(c:receive("*a"))
        c:close()
        if status == 200 then pids[tonumber(body)] = true end
      end
    end
    H.wait_for(function()
      batch()
      return next(pids, next(pids)) ~= nil
    end, 10, "answers from both serving processes")
    H.raw(srv.addr, (H.encode(H.nginx_headers("GET", "/crash"))), 5)
    H.wait_log_match(srv, 0, "serving process %d+ killed by signal")
    H.wait_for(function()
      batch()
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      return n >= 3
    end, 10, "answers from the new serving process")
    for _ = 1, 40 do H.scgi_get(srv.addr, "/pid") end
    assert.equal(0, srv.stop())
    local seen, lines = {}, H.lines(H.read_file(log))
    assert.is_true(#lines >= 40, #lines .. " lines")
    for _, line in ipairs(lines) do
      local r = H.json_decode(line)
      assert.is_nil(seen[r.id], "id " .. tostring(r.id) .. " twice")
      seen[r.id] = true
      if r.uri == "/pid" then assert.truthy(pids[r.pid], "pid " .. tostring(r.pid)) end
    end
  end)
end)
