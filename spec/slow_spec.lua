-- spec/slow_spec.lua: 2,000 slow clients (one byte per second each, a slowloris) against one
-- worker. Other requests are still answered promptly; the slow connections are closed by
-- --timeout once they stop sending, and by --request-timeout while they go on trickling (each
-- byte is progress, so --timeout alone never fires for them). Bounded: about 20 s.
--
-- The slow clients live in a helper process (a Lua script written to the temporary directory and
-- run with lua5.4 under `ulimit -n 4096`), so the spec process needs no descriptor headroom and the
-- trickle keeps its pace while the spec measures.
local H = require "helper"

local N = 2000
local TIMEOUT = 3          -- --timeout
local BUDGET = 10          -- --request-timeout
local TRICKLE_ALL = 5      -- seconds during which every slow client sends one byte per second

-- The helper: connects N clients, then every second sends one more byte of a (never complete)
-- header block on each. Group A (odd) stops after TRICKLE_ALL s, group B (even) goes on until the
-- server closes it. For every client it records when it saw EOF (relative to its last byte for A,
-- to its connect for B) and whether anything else than a plain EOF came.
local HELPER = [=[
local socket = require "socket"
local unix = require "socket.unix"
local addr, n, trickle_all, deadline_s, ready, out = arg[1], tonumber(arg[2]), tonumber(arg[3]),
  tonumber(arg[4]), arg[5], arg[6]
local pad = ("p"):rep(5000)
local block = "CONTENT_LENGTH\0" .. "0\0SCGI\0" .. "1\0REQUEST_URI\0/hello\0X\0" .. pad .. "\0"
local bytes = #block .. ":" .. block .. ","
local socks, info = {}, {}
for i = 1, n do
  local s = unix.stream and unix.stream() or unix()
  assert(s:connect(addr))
  s:settimeout(0)
  socks[i] = s
  info[i] = { connected = socket.gettime(), sent = 0, last = 0 }
end
local f = io.open(ready, "w") f:write("ready\n") f:close()
local t0 = socket.gettime()
local open, errors, data = n, {}, 0
local next_tick = t0
while open > 0 and socket.gettime() - t0 < deadline_s do
  local now = socket.gettime()
  if now >= next_tick then
    local t = now - t0
    for i = 1, n do
      local inf = info[i]
      if not inf.eof and (i % 2 == 0 or t < trickle_all) then
        local pos = inf.sent + 1
        local ok, err = socks[i]:send(bytes:sub(pos, pos))
        if ok then inf.sent, inf.last = pos, socket.gettime()
        elseif err ~= "timeout" then inf.send_err = err end
      end
    end
    next_tick = next_tick + 1
  end
  for i = 1, n do
    local inf = info[i]
    if not inf.eof then
      local d, err, partial = socks[i]:receive(1)
      if d or (partial and #partial > 0) then data = data + 1 end
      if err == "closed" or (d == nil and err ~= "timeout") then
        inf.eof = socket.gettime()
        if err ~= "closed" and #errors < 10 then errors[#errors + 1] = tostring(err) end
        socks[i]:close()
        open = open - 1
      end
    end
  end
  socket.sleep(0.05)
end
-- A: EOF after the last byte; B: EOF after the connect
local a_min, a_max, b_min, b_max, a_n, b_n = 1e9, 0, 1e9, 0, 0, 0
for i = 1, n do
  local inf = info[i]
  if inf.eof then
    if i % 2 == 1 then
      a_n = a_n + 1
      a_min, a_max = math.min(a_min, inf.eof - inf.last), math.max(a_max, inf.eof - inf.last)
    else
      b_n = b_n + 1
      b_min, b_max = math.min(b_min, inf.eof - inf.connected), math.max(b_max, inf.eof - inf.connected)
    end
  end
end
local r = io.open(out .. ".tmp", "w")
r:write(("return { a_eof = %d, a_min = %.3f, a_max = %.3f, b_eof = %d, b_min = %.3f, b_max = %.3f, " ..
  "data = %d, errors = %q, still_open = %d }\n"):format(a_n, a_min, a_max, b_n, b_min, b_max, data,
  table.concat(errors, ","), open))
r:close()
os.rename(out .. ".tmp", out)
]=]

describe("2,000 slow clients on one worker", function()
  local srv, dir
  setup(function()
    dir = H.tmpdir()
    srv = H.start("faults.lua", { dir = dir, workers = 1, env = "ulimit -n 8192;",
      options = { timeout = TIMEOUT, ["request-timeout"] = BUDGET, ["max-connections"] = 4096 } })
  end)
  teardown(function()
    if srv and srv.alive() then assert.equal(0, srv.stop()) end
    H.cleanup()
  end)

  it("do not delay other requests, and are closed by --timeout and --request-timeout", function()
    local hard = H.sh_out("ulimit -Hn"):match("%S+")
    if hard ~= "unlimited" and (tonumber(hard) or 0) < 8192 then
      pending("the hard descriptor limit (" .. tostring(hard) .. ") is under the 8192 this case needs")
      return
    end
    local base = H.fd_count(H.serving_pid(srv))
    local script, ready, out = dir .. "/slow_clients.lua", dir .. "/slow.ready", dir .. "/slow.result"
    H.write_file(script, HELPER)
    local helper = H.spawn(("ulimit -n 4096; exec lua5.4 %s %s %d %d %d %s %s"):format(H.quote(script),
      H.quote(srv.addr), N, TRICKLE_ALL, BUDGET + 6, H.quote(ready), H.quote(out)), dir, "slow-clients")
    local worst, rounds, median = 0, 0, 0
    local ok, err = pcall(function()
      H.wait_for(function()
        if not helper.alive() then error("the helper died:\n" .. helper.output()) end
        return H.read_file(ready)
      end, 15, "the slow clients to connect")
      local t0 = H.now()
      -- all of them were accepted: the server holds a descriptor for each
      H.wait_for(function() return H.fd_count(H.serving_pid(srv)) >= base + N end, 5,
        "the server to accept the " .. N .. " slow clients (it holds " .. H.fd_count(H.serving_pid(srv)) - base .. ")")
      -- while every slow client trickles, /hello round trips stay fast
      local times = {}
      while H.now() - t0 < TRICKLE_ALL do
        local t = H.now()
        local status, _, body = H.request(srv.addr, "GET", "/hello")
        local took = H.now() - t
        assert.equal(200, status)
        assert.equal("Hello world\n", body)
        times[#times + 1] = took
        worst = math.max(worst, took)
        H.sleep(0.05)
      end
      rounds = #times
      table.sort(times)
      median = times[#times // 2 + 1]
      assert.is_true(#times >= 30, "only " .. #times .. " round trips")
      assert.is_true(worst < 1, ("the slowest of %d /hello round trips took %.3f s"):format(#times, worst))
      assert.is_true(median < 0.1, ("the median /hello round trip took %.3f s"):format(median))
      assert.is_true(H.fd_count(H.serving_pid(srv)) >= base + N, "slow clients were closed while they kept sending")
      -- group A stopped at TRICKLE_ALL: --timeout closes it about TIMEOUT s after its last byte
      H.wait_for(function() return H.fd_count(H.serving_pid(srv)) <= base + N // 2 + 5 end, TIMEOUT + 3,
        "--timeout to close the half that went quiet (holds " .. H.fd_count(H.serving_pid(srv)) - base .. ")")
      -- group B keeps trickling: --request-timeout closes it BUDGET s after its accept
      assert.is_true(H.fd_count(H.serving_pid(srv)) >= base + N // 2 - 5, "a trickling client was closed before its budget")
      H.wait_for(function() return H.fd_count(H.serving_pid(srv)) == base end, BUDGET + 5 - (H.now() - t0),
        "the descriptors to go back to " .. base .. " (holds " .. H.fd_count(H.serving_pid(srv)) - base .. " more)")
      -- and the server serves right away
      local t = H.now()
      assert.equal(200, (H.request(srv.addr, "GET", "/hello")))
      assert.is_true(H.now() - t < 0.5)
      assert.equal(0, helper.wait(10))
    end)
    if helper.alive() then helper.kill("KILL") end
    assert(ok, err)
    local r = assert(loadfile(out))()
    if os.getenv("SPEC_VERBOSE") then
      io.stderr:write(("# slow clients: /hello median %.3f s, worst %.3f s over %d round trips; quiet half EOF "
        .. "%.2f-%.2f s after its last byte; trickling half EOF %.2f-%.2f s after connecting\n"):format(median, worst, rounds, r.a_min,
        r.a_max, r.b_min, r.b_max))
    end
    -- every slow client saw a plain EOF, no answer and no reset
    assert.equal(0, r.still_open)
    assert.equal("", r.errors)
    assert.equal(0, r.data)
    assert.equal(N // 2, r.a_eof)
    assert.equal(N // 2, r.b_eof)
    assert.is_true(r.a_min >= TIMEOUT - 0.2 and r.a_max <= TIMEOUT + 1.5,
      ("the quiet half saw EOF %.2f to %.2f s after its last byte"):format(r.a_min, r.a_max))
    assert.is_true(r.b_min >= BUDGET - 0.2 and r.b_max <= BUDGET + 1.5,
      ("the trickling half saw EOF %.2f to %.2f s after connecting"):format(r.b_min, r.b_max))
    -- one log line per closed connection, each with its reason
    local log = srv.output()
    assert.equal(N // 2, H.count(log, "no progress for 3 s while reading the header block; closing"))
    assert.equal(N // 2, H.count(log, "request budget of 10 s spent"))
  end)
end)
