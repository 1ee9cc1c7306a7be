-- soak/client.lua ID SECONDS SCGI_SOCKET NGINX_PORT OUTFILE: one traffic process of the soak test.
-- It sends a weighted mix of request kinds (valid, malformed, oversize, aborted, slow, error,
-- sleep), directly over SCGI and through nginx, one at a time (bursts excepted), until SECONDS
-- pass. Every kind with a known answer is checked byte for byte. The tally goes to OUTFILE as a
-- Lua table (rewritten every few seconds, so a client that dies still leaves its figures).
local socket = require "socket"
local unix = require "socket.unix"

local id, seconds, addr, port, outfile = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), arg[5]
assert(id and seconds and addr and port and outfile, "usage: client.lua ID SECONDS SOCKET PORT OUT")
math.randomseed(os.time() * 1000 + tonumber(id) * 7919)

local variant -- which variant of its kind the last request was (for the slowest-request note)
local phases = "" -- connect/send/receive times of the last scgi_raw or http call
local TIMEOUT = 20 -- seconds any single socket call may take before the request counts as failed

-- tally[kind] = { sent, ok, failed, max_seconds }; failures: the first few, with what went wrong
local tally, failures, nfailures = {}, {}, 0

local function record(kind, ok, detail, took)
  local t = tally[kind]
  if not t then
    t = { sent = 0, ok = 0, failed = 0, max_seconds = 0, slowest = "-" }
    tally[kind] = t
  end
  t.sent = t.sent + 1
  if ok then t.ok = t.ok + 1 else t.failed = t.failed + 1 end
  if took and took > t.max_seconds then
    t.max_seconds = took
    t.slowest = tostring(variant) .. (phases ~= "" and (": " .. phases) or "")
  end
  if not ok then
    nfailures = nfailures + 1
    if #failures < 40 then failures[#failures + 1] = kind .. ": " .. tostring(detail):sub(1, 300) end
  end
end

local function save()
  local out = { "return { id = " .. id .. ", tally = {" }
  local kinds = {}
  for k in pairs(tally) do kinds[#kinds + 1] = k end
  table.sort(kinds)
  for _, k in ipairs(kinds) do
    local t = tally[k]
    out[#out + 1] = ("  [%q] = { sent = %d, ok = %d, failed = %d, max_seconds = %.3f, slowest = %q },"):format(k,
      t.sent, t.ok, t.failed, t.max_seconds, t.slowest)
  end
  out[#out + 1] = "}, failures = {"
  for _, f in ipairs(failures) do out[#out + 1] = ("  %q,"):format(f) end
  out[#out + 1] = ("}, nfailures = %d }"):format(nfailures)
  local f = assert(io.open(outfile .. ".tmp", "w"))
  f:write(table.concat(out, "\n"), "\n")
  f:close()
  os.rename(outfile .. ".tmp", outfile)
end

-- ---- wire helpers ----

local function connect_scgi()
  local s = unix.stream and unix.stream() or unix()
  local ok, err = s:connect(addr)
  if not ok then
    s:close()
    return nil, "connect: " .. tostring(err)
  end
  s:settimeout(TIMEOUT)
  return s
end

local function connect_http()
  local s = socket.tcp()
  s:settimeout(TIMEOUT)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then
    s:close()
    return nil, "connect: " .. tostring(err)
  end
  return s
end

local function netstring(block) return #block .. ":" .. block .. "," end

-- The SCGI header block for METHOD URI with a body of `len` bytes and extra headers.
local function scgi_head(method, uri, len, extra)
  local parts = { "CONTENT_LENGTH\0" .. len .. "\0SCGI\0" .. "1\0", "REQUEST_METHOD\0" .. method .. "\0",
    "REQUEST_URI\0" .. uri .. "\0", "QUERY_STRING\0" .. (uri:match("%?(.*)$") or "") .. "\0",
    "SERVER_PROTOCOL\0HTTP/1.1\0", "REMOTE_ADDR\0" .. "127.0.0.1\0" }
  for _, h in ipairs(extra or {}) do parts[#parts + 1] = h[1] .. "\0" .. h[2] .. "\0" end
  return netstring(table.concat(parts))
end

-- Sends bytes (a string or a list of strings) and reads until the server closes; on failure
-- returns nil and leaves the reason in last_err (for same()).
local last_err
local function scgi_raw(bytes)
  local t0 = socket.gettime()
  local s, err = connect_scgi()
  last_err = err
  if not s then return nil, err end
  local t1 = socket.gettime()
  if type(bytes) == "string" then bytes = { bytes } end
  for _, b in ipairs(bytes) do
    local ok, e = s:send(b)
    if not ok then
      s:close()
      last_err = "send: " .. tostring(e)
      return nil, last_err
    end
  end
  local t2 = socket.gettime()
  local data, e, partial = s:receive("*a")
  s:close()
  phases = ("connect %.2f send %.2f receive %.2f"):format(t1 - t0, t2 - t1, socket.gettime() - t2)
  if not data then
    last_err = "receive: " .. tostring(e) .. " after " .. #(partial or "") .. " bytes"
    return nil, last_err
  end
  return data
end

-- One HTTP/1.0 request through nginx; returns status, body (or nil, error).
local function http(method, path, body, headers)
  local t0 = socket.gettime()
  local s, err = connect_http()
  if not s then return nil, err end
  local t1 = socket.gettime()
  local lines = { ("%s %s HTTP/1.0"):format(method, path), "Host: localhost" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  local ok, e = s:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
  if not ok then
    s:close()
    return nil, "send: " .. tostring(e)
  end
  local t2 = socket.gettime()
  local raw, e2, partial = s:receive("*a")
  s:close()
  phases = ("connect %.2f send %.2f receive %.2f"):format(t1 - t0, t2 - t1, socket.gettime() - t2)
  if not raw then return nil, "receive: " .. tostring(e2) .. " after " .. #(partial or "") .. " bytes" end
  local top, rest = raw:match("^(.-)\r\n\r\n(.*)$")
  local status = top and tonumber(top:match("^HTTP/%d%.%d (%d+)"))
  if not status then return nil, "not an HTTP answer: " .. ("%q"):format(raw:sub(1, 80)) end
  return status, rest
end

local function cgi(status_line, ctype, body)
  return ("Status: %s\r\nContent-Type: %s\r\n\r\n%s"):format(status_line, ctype, body)
end
local function own_error(code, phrase)
  return cgi(code .. " " .. phrase, "text/plain", code .. " " .. phrase .. "\n")
end

local function rnd_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- Compares an answer with what was expected; the detail names the first difference.
local function same(got, want, err)
  if got == want then return true end
  if got == nil then return false, err or last_err or "no answer" end
  local i = 1
  while i <= #got and got:byte(i) == want:byte(i) do i = i + 1 end
  return false, ("answer differs at byte %d (got %d bytes, want %d): got %q, want %q"):format(i, #got,
    #want, got:sub(i, i + 40), want:sub(i, i + 40))
end

local function via_http(status, body, want_status, want_body)
  if status == nil then return false, body end
  if status ~= want_status then return false, ("HTTP %s, want %d; body %q"):format(status, want_status, (body or ""):sub(1, 80)) end
  return same(body, want_body)
end

local block = ("0123456789abcdef"):rep(1024)

-- ---- the kinds ----

local valid_body = {}
local function body_of(n)
  if not valid_body[n] then valid_body[n] = rnd_bytes(n) end
  return valid_body[n]
end

local kinds = {}

kinds.valid = function()
  local r, direct = math.random(4), math.random() < 0.5
  variant = r .. (direct and "d" or "n")
  if r == 1 then -- a run of 20 small requests, each checked and counted on its own
    for _ = 1, 20 do
      local n, t0, ok, why = math.random(1, 1e9), socket.gettime()
      if direct then
        ok, why = same(scgi_raw(scgi_head("GET", "/hello?n=" .. n, 0)), cgi("200 OK", "text/plain", "hello " .. n .. "\n"))
      else
        local st, got = http("GET", "/hello?n=" .. n)
        ok, why = via_http(st, got, 200, "hello " .. n .. "\n")
      end
      record("valid", ok, not ok and ("variant " .. variant .. ": " .. tostring(why)) or nil, socket.gettime() - t0)
    end
    return "recorded"
  elseif r == 2 then
    local sizes = { 0, 1, 100, 4096, 65535, 65536, 200000 }
    local body = body_of(sizes[math.random(#sizes)])
    if direct then
      return same(scgi_raw({ scgi_head("POST", "/echo", #body), body }), cgi("200 OK", "application/octet-stream", body))
    end
    local st, got = http("POST", "/echo", body)
    return via_http(st, got, 200, body)
  elseif r == 3 then
    local n = math.random(1, 2000)
    local sum = 0
    for i = 1, n do sum = sum + #tostring(i) + i % 64 + i end
    local want = ("churn %d %d\n"):format(n, sum)
    if direct then return same(scgi_raw(scgi_head("GET", "/churn?n=" .. n, 0)), cgi("200 OK", "text/plain", want)) end
    local st, got = http("GET", "/churn?n=" .. n)
    return via_http(st, got, 200, want)
  else
    local body = "0123456789" .. body_of(100000)
    if direct then
      return same(scgi_raw({ scgi_head("POST", "/read-some", #body), body }), cgi("200 OK", "text/plain", "head 0123456789\n"))
    end
    local st, got = http("POST", "/read-some", body)
    return via_http(st, got, 200, "head 0123456789\n")
  end
end

local valid_block = "CONTENT_LENGTH\0" .. "0\0SCGI\0" .. "1\0REQUEST_URI\0/hello\0"
local malformed = {
  function() return "1x:abc," end,
  function() return "05:abcde," end,
  function() return ":abc," end,
  function() return "0:," end,
  function() return #valid_block .. ":" .. valid_block .. ";" end,
  function() return netstring(valid_block .. "REQUEST_METHOD") end,
  function() return netstring(valid_block .. "REQUEST_METHOD\0GET") end,
  function() return netstring(valid_block .. "\0value\0") end,
  function() return netstring("SCGI\0" .. "1\0CONTENT_LENGTH\0" .. "0\0") end,
  function() return netstring("CONTENT_LENGTH\0" .. "12a\0SCGI\0" .. "1\0") end,
  function() return netstring("CONTENT_LENGTH\0-1\0SCGI\0" .. "1\0") end,
  function() return netstring("CONTENT_LENGTH\0" .. "0\0REQUEST_URI\0/\0") end,
  function() return netstring("CONTENT_LENGTH\0" .. "0\0SCGI\0" .. "2\0") end,
  function() return netstring(valid_block .. "REQUEST_URI\0/again\0") end,
  function() return "x" .. rnd_bytes(math.random(0, 300)) end,
  function() return "GET / HTTP/1.1\r\nHost: x\r\n\r\n" end,
}
kinds.malformed = function()
  variant = math.random(#malformed)
  local bytes = malformed[variant]()
  return same(scgi_raw(bytes), own_error(400, "Bad Request"))
end

kinds.oversize = function()
  local r = math.random(5)
  variant = r
  if r == 1 then -- CONTENT_LENGTH over --max-body-size (1M), no body sent: answered at once
    return same(scgi_raw(scgi_head("POST", "/echo", 2 * 1048576)), own_error(413, "Content Too Large"))
  elseif r == 2 then -- the whole over-limit body sent
    local body = body_of(1048577)
    return same(scgi_raw({ scgi_head("POST", "/echo", #body), body }), own_error(413, "Content Too Large"))
  elseif r == 3 then -- a header block over --max-header-size (8K)
    return same(scgi_raw(scgi_head("GET", "/hello", 0, { { "HTTP_X_PAD", ("p"):rep(9000) } })),
      own_error(431, "Request Header Fields Too Large"))
  elseif r == 4 then -- through nginx: a body over the limit
    local st, got = http("POST", "/echo", body_of(1048577))
    return via_http(st, got, 413, "413 Content Too Large\n")
  else -- through nginx: a header nginx takes, but whose SCGI block is over 8K
    local st, got = http("GET", "/hello", nil, { ["X-Pad"] = ("p"):rep(7600), ["X-Pad2"] = ("q"):rep(1000) })
    return via_http(st, got, 431, "431 Request Header Fields Too Large\n")
  end
end

-- The client goes away early; the only check is that it could connect (the run checks the
-- server's descriptors and memory).
kinds.aborted = function()
  local r = math.random(8)
  variant = r
  local s, err
  if r <= 5 then s, err = connect_scgi() else s, err = connect_http() end
  if not s then return false, err end
  if r == 1 then
    s:send("60:CONTENT_LENGTH\0" .. "0\0SC")
  elseif r == 2 then
    s:send(scgi_head("POST", "/echo", 100000) .. body_of(1000))
  elseif r == 3 then
    s:send(scgi_head("GET", "/stream?kb=8192", 0))
    s:receive(65536)
  elseif r == 4 then -- connect, send nothing, close
  elseif r == 5 then
    s:send(scgi_head("GET", "/sleep?ms=200", 0))
  elseif r == 6 then
    s:send("GET /stream?kb=8192 HTTP/1.0\r\nHost: x\r\n\r\n")
    s:receive(65536)
  elseif r == 7 then
    s:send("GET /sleep?ms=200 HTTP/1.0\r\nHost: x\r\n\r\n")
  else
    s:send("POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" .. body_of(1000))
  end
  s:close()
  return true
end

kinds.slow = function()
  local r = math.random(10)
  variant = r
  if r <= 4 then -- the request in pieces, 30 ms apart (under --timeout)
    local body = body_of(200)
    local bytes = scgi_head("POST", "/echo", #body) .. body
    local s, err = connect_scgi()
    if not s then return false, err end
    local step = #bytes // 10 + 1
    for i = 1, #bytes, step do
      s:send(bytes:sub(i, i + step - 1))
      socket.sleep(0.03)
    end
    local raw, e = s:receive("*a")
    s:close()
    return same(raw, cgi("200 OK", "application/octet-stream", body), e)
  elseif r <= 7 then -- a slow reader, directly or through nginx
    local want = block:rep(64)
    local s, err
    if r <= 6 then
      s, err = connect_scgi()
      if s then s:send(scgi_head("GET", "/stream?kb=1024", 0)) end
    else
      s, err = connect_http()
      if s then s:send("GET /stream?kb=1024 HTTP/1.0\r\nHost: x\r\n\r\n") end
    end
    if not s then return false, err end
    local parts = {}
    while true do
      local d, e, p = s:receive(16384)
      parts[#parts + 1] = d or p
      if not d then
        if e ~= "closed" then s:close() return false, "receive: " .. tostring(e) end
        break
      end
      socket.sleep(0.004)
    end
    s:close()
    local raw = table.concat(parts)
    local body = raw:match("\r\n\r\n(.*)$")
    if r <= 6 then return same(raw, cgi("200 OK", "application/octet-stream", want)) end
    if not raw:match("^HTTP/1%.%d 200") then return false, "HTTP " .. raw:sub(1, 40) end
    return same(body, want)
  elseif r <= 9 then -- a sleep through nginx, the request sent slowly
    local s, err = connect_http()
    if not s then return false, err end
    local req = "GET /sleep?ms=50 HTTP/1.0\r\nHost: localhost\r\n\r\n"
    for i = 1, #req, 8 do
      s:send(req:sub(i, i + 7))
      socket.sleep(0.01)
    end
    local raw, e = s:receive("*a")
    s:close()
    if not raw then return false, e end
    return same(raw:match("\r\n\r\n(.*)$"), "slept 50\n")
  else -- stalls mid-header: --timeout (2 s) closes it without an answer
    local s, err = connect_scgi()
    if not s then return false, err end
    local t0 = socket.gettime()
    s:send("40:CONTENT_LENGTH\0")
    local d, e, p = s:receive("*a")
    local took = socket.gettime() - t0
    s:close()
    if (d or p) ~= "" then return false, "got an answer: " .. (d or p):sub(1, 60) end
    if took < 1.5 or took > 8 then return false, ("closed after %.2f s, want about 2"):format(took) end
    return true
  end
end

kinds.error = function()
  local r = math.random(4)
  variant = r
  if r == 1 then return same(scgi_raw(scgi_head("GET", "/error", 0)), own_error(500, "Internal Server Error")) end
  if r == 2 then
    local st, got = http("GET", "/error")
    return via_http(st, got, 500, "500 Internal Server Error\n")
  end
  if r == 3 then return same(scgi_raw(scgi_head("GET", "/gc-error", 0)), cgi("200 OK", "text/plain", "gc-error\n")) end
  local st, got = http("GET", "/gc-error")
  return via_http(st, got, 200, "gc-error\n")
end

kinds.sleep = function()
  local r = math.random(10)
  variant = r
  if r <= 4 then
    local ms = math.random(1, 300)
    return same(scgi_raw(scgi_head("GET", "/sleep?ms=" .. ms, 0)), cgi("200 OK", "text/plain", ("slept %d\n"):format(ms)))
  elseif r <= 8 then
    local ms = math.random(1, 300)
    local st, got = http("GET", "/sleep?ms=" .. ms)
    return via_http(st, got, 200, ("slept %d\n"):format(ms))
  else -- a burst: 24 sleeping requests at once, all answered in about one sleep
    local socks = {}
    for i = 1, 24 do
      local s, err = connect_scgi()
      if not s then
        for _, o in ipairs(socks) do o:close() end
        return false, err
      end
      s:send(scgi_head("GET", "/sleep?ms=" .. (100 + i), 0))
      socks[i] = s
    end
    local bad
    for i, s in ipairs(socks) do
      local raw, e = s:receive("*a")
      s:close()
      local ok, why = same(raw, cgi("200 OK", "text/plain", ("slept %d\n"):format(100 + i)), e)
      if not ok then bad = bad or ("burst request " .. i .. ": " .. why) end
    end
    return bad == nil, bad
  end
end

local weights = { { "valid", 40 }, { "malformed", 8 }, { "oversize", 6 }, { "aborted", 10 },
  { "slow", 6 }, { "error", 8 }, { "sleep", 10 } }
local total = 0
for _, w in ipairs(weights) do total = total + w[2] end
local function pick()
  local x = math.random(total)
  for _, w in ipairs(weights) do
    x = x - w[2]
    if x <= 0 then return w[1] end
  end
end

-- the random bodies are made before the clock starts, so the timings are the server's
for _, n in ipairs({ 0, 1, 100, 200, 1000, 4096, 65535, 65536, 100000, 200000, 1048577 }) do body_of(n) end

local deadline = socket.gettime() + seconds
local next_save = socket.gettime() + 3
while socket.gettime() < deadline do
  local kind = pick()
  local t0 = socket.gettime()
  variant, phases = nil, ""
  local okc, ok, detail = pcall(kinds[kind])
  if not okc then ok, detail = false, "client error: " .. tostring(ok) end
  if ok ~= "recorded" then
    if not ok then detail = "variant " .. tostring(variant) .. ": " .. tostring(detail) end
    record(kind, ok, detail, socket.gettime() - t0)
  end
  if socket.gettime() > next_save then
    save()
    next_save = socket.gettime() + 3
  end
end
save()
