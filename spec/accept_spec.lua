-- spec/accept_spec.lua: how clients reach the workers (--accept, docs/accept.md). In every mode a
-- client never waits behind a worker busy in Lua while another worker is idle; in the default
-- mode (direct) also when the idle worker is one past the number of CPUs, which only the
-- acceptor's hand-off reaches.
local H = require "helper"

local NCPU = tonumber(H.sh_out("nproc"):match("%d+"))

local APP = [[
local scgi = require "scgi"
local function spin(ms)
  local t = scgi.now()
  while scgi.now() - t < ms / 1000 do end
end
return function(headers, client)
  local ms = headers.QUERY_STRING:match("^ms=(%d+)$")
  if ms then spin(tonumber(ms)) end
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", scgi.worker().id, "\n")
end
]]

-- Starts the app with the workers and the accept mode.
local function start(workers, mode)
  local dir = H.tmpdir()
  H.write_file(dir .. "/app.lua", APP)
  return H.start(dir .. "/app.lua", { dir = dir, workers = workers,
    options = { accept = mode, ["cpu-limit"] = "10" } })
end

-- Sends n requests that each hold a worker in Lua for ms, one after another (each is taken
-- before the next is sent); returns a function that checks their answers and the workers that
-- took them.
local function hold(srv, n, ms)
  local held = {}
  for i = 1, n do
    held[i] = H.send_get(srv.addr, "/?ms=" .. ms, 30)
    H.sleep(0.1)
  end
  return function()
    local ids = {}
    for _, s in ipairs(held) do
      local raw = s:receive("*a")
      s:close()
      local status, _, body = H.parse(raw)
      assert.equal(200, status, raw)
      ids[#ids + 1] = tonumber(body)
    end
    return ids
  end
end

-- While the workers are held, requests that run no Lua to speak of are answered at once, by a
-- worker that is not held.
local function answered_meanwhile(srv, held_ids)
  for _ = 1, 10 do
    local t0 = H.now()
    local body = H.request_ok(srv.addr, "GET", "/")
    local took = H.now() - t0
    assert.is_true(took < 0.5, "a request waited " .. took .. " s behind a busy worker")
    held_ids[#held_ids + 1] = tonumber(body)
  end
end

describe("--accept", function()
  after_each(H.cleanup)

  for _, mode in ipairs({ "direct", "handoff", "shared" }) do
    it(mode .. ": a client does not wait behind a worker busy in Lua while another is idle", function()
      local srv = start(2, mode)
      local finish = hold(srv, 1, 1500)
      local others = {}
      answered_meanwhile(srv, others)
      local busy = finish()[1]
      for _, id in ipairs(others) do assert.are_not.equal(busy, id) end
      assert.equal(0, srv.stop())
    end)
  end

  it("direct: with a worker more than CPUs, clients go to it while the others all run Lua", function()
    local srv = start(NCPU + 1, "direct")
    local finish = hold(srv, NCPU, 2500)
    local others = {}
    answered_meanwhile(srv, others)
    local busy = finish()
    for _, id in ipairs(others) do
      assert.equal(NCPU, id, "the extra worker is number " .. NCPU)
    end
    table.sort(busy)
    for i = 1, NCPU do assert.equal(i - 1, busy[i]) end
    assert.equal(0, srv.stop())
  end)

  it("direct: the first workers wait in the kernel with EPOLLEXCLUSIVE, one set each", function()
    local srv = start(NCPU + 1, "direct")
    local pid = H.serving_pid(srv)
    local listener -- the socket all the exclusive entries name
    local exclusive = 0
    for fd in H.sh_out("ls /proc/" .. pid .. "/fdinfo"):gmatch("%d+") do
      local info = H.read_file("/proc/" .. pid .. "/fdinfo/" .. fd) or ""
      for tfd, events in info:gmatch("tfd:%s+(%d+)%s+events:%s+(%x+)") do
        if tonumber(events, 16) & 0x10000000 ~= 0 then
          assert.is_true(listener == nil or listener == tfd, info)
          listener = tfd
          exclusive = exclusive + 1
        end
      end
    end
    assert.equal(NCPU, exclusive)
    assert.equal(0, srv.stop())
  end)
end)
