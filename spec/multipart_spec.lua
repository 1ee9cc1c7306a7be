-- spec/multipart_spec.lua: scgi.multipart as a unit in plain Lua (a fake client feeds the body in
-- random-sized pieces), then uploads end to end through a real nginx: a few MiB checked by a
-- checksum, examples/upload.lua saving files, and a big upload whose worker memory stays bounded.
local multipart = require "scgi.multipart"
local H = require "helper"
local checksum = dofile(H.apps .. "/checksum.lua")
local socket = require "socket"

-- n pseudo-random bytes (deterministic for a seed).
local function rand_bytes(n, seed)
  math.randomseed(seed)
  local t = {}
  for i = 1, n // 8 + 1 do t[i] = string.pack("<j", math.random(0)) end
  return table.concat(t):sub(1, n)
end

-- A fake client over body: read(n) returns 1..n bytes (random sizes when seed is given), nil at
-- the end; fails with nil, "closed", 104 once fail_at bytes were handed out.
local function fake_client(body, seed, fail_at)
  local rng = seed and (function()
    local state = seed
    return function(n)
      state = (state * 1103515245 + 12345) % 2147483648
      return state % n + 1
    end
  end)()
  local pos = 1
  return {
    reads = 0,
    read = function(self, n)
      if math.type(n) ~= "integer" or n <= 0 then error("read(n) needs a positive integer") end
      self.reads = self.reads + 1
      if fail_at and pos > fail_at then return nil, "closed", 104 end
      if pos > #body then return nil end
      local take = rng and rng(n) or n
      local piece = body:sub(pos, pos + take - 1)
      pos = pos + #piece
      return piece
    end,
  }
end

-- A multipart body: parts is a list of { headers = "Name: v\r\n...", data = "..." }.
local function build(boundary, parts, preamble, epilogue)
  local out = { preamble or "" }
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. boundary .. "\r\n" .. (p.headers or "") .. "\r\n" .. p.data .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n" .. (epilogue or "")
  return table.concat(out)
end

-- Content-Disposition headers for a field or a file.
local function field(name, data) return { headers = ('Content-Disposition: form-data; name="%s"\r\n'):format(name), data = data } end
local function file(name, filename, ctype, data)
  return { headers = ('Content-Disposition: form-data; name="%s"; filename="%s"\r\nContent-Type: %s\r\n'):format(
    name, filename, ctype), data = data }
end

local function ctype_of(boundary) return "multipart/form-data; boundary=" .. boundary end

-- Parses body with the callback API; returns the parts ({ part = record, data = string, chunks
-- = n }) or nil, message. Checks the chunk size bound on the way.
local function collect(body, ctype, seed, options)
  local parts, cur = {}, nil
  local limit = ((options and options.chunk_size) or 65536) + 80
  local n, err = multipart.parse({ CONTENT_TYPE = ctype }, fake_client(body, seed), {
    on_part = function(part)
      cur = { part = part, pieces = {}, chunks = 0 }
      parts[#parts + 1] = cur
    end,
    on_data = function(chunk, part)
      -- plain checks: luassert per chunk would dominate the run time
      if part ~= cur.part then error("on_data got another part") end
      if #chunk == 0 or #chunk > limit then error("chunk of " .. #chunk .. " bytes") end
      cur.pieces[#cur.pieces + 1] = chunk
      cur.chunks = cur.chunks + 1
    end,
    on_part_end = function(part)
      assert.equal(cur.part, part)
      cur.data = table.concat(cur.pieces)
      cur.pieces = nil
    end,
  }, options)
  if not n then return nil, err end
  assert.equal(#parts, n)
  return parts
end

describe("scgi.multipart parsing", function()
  local B = "----scgiBoundary7MA4YWxkTrZu0gW"

  it("streams fields and files, in random-sized pieces and with several chunk sizes", function()
    local data = rand_bytes(100000, 1)
    local body = build(B, { field("title", "Hello"), field("empty", ""),
      file("upload", "a.bin", "application/octet-stream", data), field("tail", "x\r\ny") })
    for _, chunk in ipairs({ 1, 7, 64, 1000, 65536 }) do
      for seed = 1, 20 do
        local parts = assert(collect(body, ctype_of(B), seed, { chunk_size = chunk }))
        assert.equal(4, #parts)
        assert.equal("title", parts[1].part.name)
        assert.is_nil(parts[1].part.filename)
        assert.equal("text/plain", parts[1].part.content_type)
        assert.equal("Hello", parts[1].data)
        assert.equal("", parts[2].data)
        assert.equal(0, parts[2].chunks)
        assert.equal("upload", parts[3].part.name)
        assert.equal("a.bin", parts[3].part.filename)
        assert.equal("application/octet-stream", parts[3].part.content_type)
        assert.equal("form-data", parts[3].part.disposition)
        assert.is_true(data == parts[3].data)
        assert.equal("x\r\ny", parts[4].data)
      end
    end
  end)

  it("is not fooled by data that looks like a boundary", function()
    local tricky = table.concat({
      "\r\n--", "--" .. B, "\r\n-" .. B, "\r\n--" .. B:sub(1, -2), "\n--" .. B .. "\r\n",
      "\r--" .. B, "--" .. B .. "--", "\r\n\r\n", "\r\n--",
    })
    local body = build(B, { file("f", "t.txt", "text/plain", tricky), field("g", "\r\n--") })
    for seed = 1, 50 do
      local parts = assert(collect(body, ctype_of(B), seed, { chunk_size = 1 + seed % 17 }))
      assert.equal(2, #parts)
      assert.equal(tricky, parts[1].data)
      assert.equal("\r\n--", parts[2].data)
    end
  end)

  it("round-trips random parts of random binary data", function()
    for seed = 1, 60 do
      math.randomseed(seed)
      local parts = {}
      for i = 1, math.random(1, 6) do
        local size = ({ 0, 1, 2, 70, 4096, 30000 })[math.random(1, 6)]
        local data = rand_bytes(size, seed * 100 + i)
        if math.random(2) == 1 then data = data .. "\r\n--" .. B:sub(1, math.random(1, #B - 1)) end
        parts[i] = file("f" .. i, "n" .. i, "application/x-test", data)
      end
      local body = build(B, parts, "preamble\r\n", "epilogue")
      local got = assert(collect(body, ctype_of(B), seed, { chunk_size = ({ 5, 100, 4096 })[seed % 3 + 1] }))
      assert.equal(#parts, #got)
      for i, p in ipairs(parts) do
        assert.equal("f" .. i, got[i].part.name)
        assert.is_true(p.data == got[i].data, "part " .. i .. " of seed " .. seed)
      end
    end
  end)

  it("skips a preamble and an epilogue, and takes padding after a boundary", function()
    local body = "This is the preamble.\r\n--" .. B .. "  \t\r\n" ..
      'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n--' .. B .. "--\r\nepilogue --" .. B .. "\r\n"
    local parts = assert(collect(body, ctype_of(B), 3))
    assert.equal(1, #parts)
    assert.equal("1", parts[1].data)
  end)

  it("accepts a part without headers and a body without a final CRLF", function()
    local body = "--" .. B .. "\r\n\r\nraw\r\n--" .. B .. "--"
    local parts = assert(collect(body, ctype_of(B), 5))
    assert.equal(1, #parts)
    assert.is_nil(parts[1].part.name)
    assert.same({}, parts[1].part.headers)
    assert.equal("raw", parts[1].data)
  end)

  it("gives zero parts for a body that is only the final boundary", function()
    assert.same({}, assert(collect("--" .. B .. "--\r\n", ctype_of(B), 1)))
  end)

  it("parses Content-Disposition parameters", function()
    local cases = {
      { 'form-data; name="a;b"; filename="x\\"y.txt"', "a;b", 'x"y.txt' },
      { "form-data; name=plain; filename=file.txt", "plain", "file.txt" },
      { 'Form-Data; NAME="up"; FileName="C:\\Users\\me\\a.txt"', "up", "C:\\Users\\me\\a.txt" },
      { "form-data; name=\"f\"; filename=\"plain.txt\"; filename*=UTF-8''caf%C3%A9.txt", "f", "caf\xc3\xa9.txt" },
      { 'form-data ; name = "sp" ; filename=""', "sp", "" },
      { 'form-data; name="%22q%22"; filename="a\\\\b"', "%22q%22", "a\\b" },
    }
    for _, c in ipairs(cases) do
      local body = "--" .. B .. "\r\nContent-Disposition: " .. c[1] .. "\r\n\r\nv\r\n--" .. B .. "--\r\n"
      local parts = assert(collect(body, ctype_of(B), 2))
      assert.equal(c[2], parts[1].part.name)
      assert.equal(c[3], parts[1].part.filename)
      assert.equal("form-data", parts[1].part.disposition)
    end
  end)

  it("keeps every part header, lower-cased, with folded lines joined", function()
    local body = "--" .. B .. "\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Extra: one\r\n" ..
      "X-Folded: first\r\n  second\r\nContent-Type: Text/CSV; charset=utf-8\r\n\r\nv\r\n--" .. B .. "--\r\n"
    local part = assert(collect(body, ctype_of(B), 2))[1].part
    assert.equal("one", part.headers["x-extra"])
    assert.equal("first second", part.headers["x-folded"])
    assert.equal("Text/CSV; charset=utf-8", part.content_type)
  end)

  it("finds the boundary in any Content-Type spelling", function()
    local body = build("a b:c", { field("x", "1") })
    local got = assert(collect(body, 'MULTIPART/FORM-DATA; charset=utf-8; BOUNDARY="a b:c"', 1))
    assert.equal("1", got[1].data)
    assert.equal("simple", multipart.boundary("multipart/form-data;boundary=simple"))
    assert.equal("q;x", multipart.boundary('multipart/form-data; boundary="q;x"; other=1'))
  end)

  describe("gives nil and a message, never raising,", function()
    local function fails(body, ctype, pattern, client)
      local ok, n, err = pcall(multipart.parse, { CONTENT_TYPE = ctype or ctype_of(B) },
        client or fake_client(body, 9), {})
      assert.is_true(ok, tostring(n))
      assert.is_nil(n)
      assert.matches(pattern, err)
    end

    it("for a missing or wrong Content-Type or boundary", function()
      fails("", "", "no Content%-Type")
      fails("", "text/plain", "not a multipart/form%-data body")
      fails("", "multipart/form-data", "missing boundary")
      fails("", "multipart/form-data; boundary=", "missing boundary")
      fails("", "multipart/form-data; boundary=" .. ("x"):rep(300), "invalid boundary")
      local r, err = multipart.reader({}, fake_client(""))
      assert.is_nil(r)
      assert.equal("no Content-Type", err)
    end)

    it("for a body without the boundary, or empty", function()
      fails("just some text", nil, "missing boundary")
      fails("", nil, "missing boundary")
      fails("--other\r\n\r\nx\r\n--other--", nil, "missing boundary")
    end)

    it("for a truncated body", function()
      local body = build(B, { file("f", "a", "text/plain", ("z"):rep(5000)) })
      fails(body:sub(1, 3000), nil, "truncated body: it ends inside a part")
      fails(body:sub(1, #body - #("--" .. B .. "--\r\n")), nil, "truncated body")
      fails("--" .. B .. "\r\nContent-Disposition: form-data", nil, "truncated body: it ends in a part's headers")
      fails("--" .. B, nil, "truncated body: it ends in a boundary line")
      fails("--" .. B .. "\r\n\r\ndata\r\n--" .. B, nil, "truncated body")
    end)

    it("for a malformed boundary line or part header", function()
      fails("--" .. B .. "X\r\n\r\nv\r\n--" .. B .. "--", nil, "malformed boundary line")
      fails("--" .. B .. "\r\n\r\nv\r\n--" .. B .. "zz\r\n", nil, "malformed boundary line")
      fails("--" .. B .. "\r\nno colon here\r\n\r\nv\r\n--" .. B .. "--", nil, "malformed part header line")
    end)

    it("for part headers over max_header_size", function()
      local body = "--" .. B .. "\r\nX-Big: " .. ("h"):rep(40000) .. "\r\n\r\nv\r\n--" .. B .. "--"
      fails(body, nil, "part headers too large")
      assert(collect(body, ctype_of(B), 1, { max_header_size = 65536 }))
    end)

    it("for a client that went away", function()
      local body = build(B, { file("f", "a", "text/plain", ("z"):rep(50000)) })
      fails(nil, nil, "client closed", fake_client(body, 4, 20000))
    end)

    it("for random damage to a valid body", function()
      local good = build(B, { field("a", "1"), file("f", "x", "text/plain", rand_bytes(3000, 7)) })
      for seed = 1, 300 do
        math.randomseed(seed)
        local body = good
        for _ = 1, math.random(1, 4) do
          local pos = math.random(1, #body)
          local kind = math.random(3)
          if kind == 1 then
            body = body:sub(1, pos - 1) .. body:sub(pos + math.random(1, 50))
          elseif kind == 2 then
            body = body:sub(1, pos - 1) .. string.char(math.random(0, 255)) .. body:sub(pos + 1)
          else
            body = body:sub(1, pos)
          end
        end
        local ok, n, err = pcall(multipart.parse, { CONTENT_TYPE = ctype_of(B) }, fake_client(body, seed), {
          on_data = function() end })
        assert.is_true(ok, "raised for seed " .. seed .. ": " .. tostring(n))
        assert.is_true((math.type(n) == "integer" and err == nil) or (n == nil and type(err) == "string"))
      end
    end)
  end)

  it("stops when a callback returns false, with its message", function()
    local body = build(B, { field("a", "1"), field("b", "2") })
    local n, err = multipart.parse({ CONTENT_TYPE = ctype_of(B) }, fake_client(body), {
      on_part = function(part) if part.name == "b" then return false, "no b allowed" end end })
    assert.is_nil(n)
    assert.equal("no b allowed", err)
    n, err = multipart.parse({ CONTENT_TYPE = ctype_of(B) }, fake_client(body), {
      on_data = function() return false end })
    assert.is_nil(n)
    assert.equal("stopped by a callback", err)
  end)

  it("raises bad argument for misuse", function()
    local h = { CONTENT_TYPE = ctype_of(B) }
    assert.error_matches(function() multipart.parse(nil, fake_client(""), {}) end, "bad argument #1 to 'multipart'")
    assert.error_matches(function() multipart.parse(h, nil, {}) end, "bad argument #2 to 'multipart'")
    assert.error_matches(function() multipart.parse(h, fake_client(""), nil) end, "bad argument #3 to 'multipart'")
    assert.error_matches(function() multipart.parse(h, fake_client(""), {}, 5) end, "bad argument #4 to 'multipart'")
    assert.error_matches(function() multipart.reader(h, fake_client(""), { chunk_size = 0 }) end,
      "bad argument #3 to 'multipart_reader'")
  end)

  describe("the pull API", function()
    it("hands out parts and chunks; next_part skips what was not read", function()
      local big = rand_bytes(300000, 11)
      local body = build(B, { file("skip", "s.bin", "application/octet-stream", big), field("name", "value"),
        file("keep", "k.bin", "application/octet-stream", big) })
      local client = fake_client(body, 17)
      local r = assert(multipart.reader({ CONTENT_TYPE = ctype_of(B) }, client, { chunk_size = 4096 }))
      local p = assert(r:next_part())
      assert.equal("skip", p.name)
      assert.is_true(#assert(r:read()) > 0)
      p = assert(r:next_part())
      assert.equal("name", p.name)
      assert.equal("value", r:read_all(100))
      assert.is_nil(r:read())
      p = assert(r:next_part())
      assert.equal("keep", p.name)
      local pieces, max_buf = {}, 0
      while true do
        local chunk, err = r:read()
        assert.is_nil(err)
        if not chunk then break end
        pieces[#pieces + 1] = chunk
        max_buf = math.max(max_buf, #r.buf)
      end
      assert.is_true(big == table.concat(pieces))
      assert.is_true(max_buf <= 4096 + #B + 4, "buffer grew to " .. max_buf)
      assert.is_nil(r:next_part())
      assert.is_nil(r:next_part())
    end)

    it("read_all refuses a part over its limit", function()
      local body = build(B, { field("a", ("x"):rep(2000)) })
      local r = assert(multipart.reader({ CONTENT_TYPE = ctype_of(B) }, fake_client(body, 1)))
      assert(r:next_part())
      local v, err = r:read_all(1000)
      assert.is_nil(v)
      assert.equal("part larger than 1000 bytes", err)
      assert.is_nil(r:next_part())
      assert.equal("part larger than 1000 bytes", select(2, r:next_part()))
    end)

    it("keeps memory bounded: a 16 MiB part in 64 KiB chunks", function()
      local size = 16 * 1048576
      local chunk = rand_bytes(65536, 5)
      -- A client that produces the body on the fly, so the spec does not hold it either.
      local head = "--" .. B .. '\r\nContent-Disposition: form-data; name="f"; filename="big"\r\n\r\n'
      local tail = "\r\n--" .. B .. "--\r\n"
      local sent, total = 0, #head + size + #tail
      local client = { read = function(_, n)
        if sent >= total then return nil end
        local s
        if sent < #head then s = head
        elseif sent < #head + size then s = chunk
        else s = tail end
        s = s:sub(1, math.min(n, total - sent))
        sent = sent + #s
        return s
      end }
      local r = assert(multipart.reader({ CONTENT_TYPE = ctype_of(B) }, client))
      assert(r:next_part())
      collectgarbage()
      local before = collectgarbage("count")
      local got, peak, st, n = 0, 0, checksum.new(), 0
      while true do
        local c = r:read()
        if not c then break end
        got = got + #c
        checksum.update(st, c)
        n = n + 1
        -- what the reader keeps, not garbage waiting for the collector (whose pause depends on
        -- what the specs before this one left in the heap)
        if n % 32 == 0 then
          collectgarbage()
          peak = math.max(peak, collectgarbage("count") - before)
        end
      end
      assert.equal(size, got)
      assert.is_nil(r:next_part())
      assert.is_true(peak < 8 * 1024, "Lua memory grew by " .. peak .. " KiB")
    end)
  end)
end)

-- An HTTP/1.0 POST of a body produced in pieces by next_piece() (nil at the end); returns
-- status, body. Nothing holds the whole body.
local function http_stream(port, path, ctype, length, next_piece)
  local s = assert(socket.connect("127.0.0.1", port))
  s:settimeout(600)
  assert(s:send(("POST %s HTTP/1.0\r\nHost: localhost\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n")
    :format(path, ctype, length)))
  while true do
    local piece = next_piece()
    if not piece then break end
    assert(s:send(piece))
  end
  local raw = assert(s:receive("*a"))
  s:close()
  local status = tonumber(raw:match("^HTTP/%d%.%d (%d+)"))
  return status, raw:match("\r\n\r\n(.*)$")
end

-- The peak resident memory of a process, in KiB (VmHWM), and its current one (VmRSS).
local function memory_kib(pid)
  local s = H.read_file("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmHWM:%s*(%d+)")), tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- True if the scgi-lua under test is built with AddressSanitizer (make asan).
local function asan_build()
  return H.sh_out("ldd " .. H.quote(H.program) .. " 2>/dev/null"):find("libasan", 1, true) ~= nil
end

describe("uploads through nginx", function()
  local B = "scgiSpecBoundary9f3a"
  local asan = asan_build()
  local srv = H.serve("upload.lua", { workers = 1, options = { ["max-body-size"] = "0",
    ["request-timeout"] = "600", ["cpu-limit"] = "600" } })
  local ng = H.nginx_for(srv, "scgi_read_timeout 600s; scgi_send_timeout 600s;")

  -- The parts of a few-MiB form: fields, files with tricky and random content, an empty file.
  local function form_parts()
    return {
      field("title", "A few MiB"),
      file("random", "random.bin", "application/octet-stream", rand_bytes(3 * 1048576 + 17, 42)),
      file("tricky", "tricky.txt", "text/plain", ("\r\n--" .. B:sub(1, 10) .. "\r\n"):rep(5000)),
      file("empty", "empty.txt", "text/plain", ""),
      field("last", "end"),
    }
  end

  -- The answer line the app gives for a part with data.
  local function line(p, sum)
    local name = p.headers:match('name="([^"]*)"')
    local filename = p.headers:match('filename="([^"]*)"') or "-"
    local ctype = p.headers:match("Content%-Type: ([^\r]*)") or "text/plain"
    return ("part %s|%s|%s|%d|%s\n"):format(name, filename, ctype, #p.data, sum or checksum.of(p.data))
  end

  it("streams a multipart upload of a few MiB; every checksum is right (callback API)", function()
    local parts = form_parts()
    local status, _, body = H.http(ng.port, "POST", "/upload", build(B, parts), { ["Content-Type"] = ctype_of(B) })
    assert.equal(200, status)
    local expected = {}
    for _, p in ipairs(parts) do expected[#expected + 1] = line(p) end
    assert.equal(table.concat(expected), body:match("^(.-)parts "))
    assert.matches("parts 5\n", body, 1, true)
  end)

  it("streams the same upload with the pull API", function()
    local parts = form_parts()
    local status, _, body = H.http(ng.port, "POST", "/upload-pull", build(B, parts), { ["Content-Type"] = ctype_of(B) })
    assert.equal(200, status)
    local expected = {}
    for _, p in ipairs(parts) do
      expected[#expected + 1] = line(p, not p.headers:find("filename") and ("value=" .. p.data) or nil)
    end
    assert.equal(table.concat(expected), body:match("^(.-)parts "))
  end)

  it("answers 400 with the message for a malformed upload", function()
    local body = build(B, { field("a", "1") })
    local status, _, got = H.http(ng.port, "POST", "/upload", body:sub(1, -10), { ["Content-Type"] = ctype_of(B) })
    assert.equal(400, status)
    assert.equal("error: truncated body: it ends inside a part\n", got)
    status, _, got = H.http(ng.port, "POST", "/upload", body, { ["Content-Type"] = "multipart/form-data" })
    assert.equal(400, status)
    assert.equal("error: missing boundary in Content-Type\n", got)
    status = H.http(ng.port, "POST", "/upload", "x", { ["Content-Type"] = ctype_of(B) })
    assert.equal(400, status)
  end)

  local mb = tonumber(os.getenv("SCGI_BIG_UPLOAD_MB") or "256")
  it(("streams a %d MiB upload with the worker's peak memory under 64 MiB"):format(mb), function()
    local block = rand_bytes(1048576, 99)
    local head = "--" .. B .. '\r\nContent-Disposition: form-data; name="big"; filename="big.bin"\r\n' ..
      "Content-Type: application/octet-stream\r\n\r\n"
    local tail = "\r\n--" .. B .. "--\r\n"
    local st = checksum.new()
    local i = 0
    -- head, then mb blocks (each made distinct by its number), then tail.
    local function next_piece()
      i = i + 1
      if i == 1 then return head end
      if i <= mb + 1 then
        local piece = ("%08d"):format(i) .. block:sub(9)
        checksum.update(st, piece)
        return piece
      end
      if i == mb + 2 then return tail end
      return nil
    end
    local hwm_before = memory_kib(srv.pid)
    local t0 = socket.gettime()
    local status, body = http_stream(ng.port, "/upload", ctype_of(B), #head + mb * 1048576 + #tail, next_piece)
    local elapsed = socket.gettime() - t0
    local hwm = memory_kib(srv.pid)
    local lua_peak = tonumber(body and body:match("lua_peak (%d+)"))
    io.stderr:write(("\n[big upload] %d MiB in %.2f s through nginx (app: %s s); scgi-lua VmHWM %d KiB " ..
      "(%d KiB before), Lua heap peak %s KiB%s\n"):format(mb, elapsed, body and body:match("seconds ([%d.]+)") or "?",
      hwm, hwm_before, lua_peak and lua_peak // 1024 or "?", asan and " (ASan build: VmHWM not checked)" or ""))
    assert.equal(200, status)
    assert.equal(("part big|big.bin|application/octet-stream|%d|%s\nparts 1\n"):format(mb * 1048576,
      checksum.final(st)), body:match("^(.-)lua_memory"))
    assert.is_true(lua_peak < 16 * 1048576, "the Lua heap grew to " .. lua_peak .. " bytes")
    -- ASan's quarantine keeps freed memory resident, so the process size says nothing there
    if not asan then assert.is_true(hwm < 64 * 1024, "scgi-lua's peak memory was " .. hwm .. " KiB") end
  end)
end)

describe("examples/upload.lua through nginx", function()
  local dir
  local srv = H.serve(H.root .. "/examples/upload.lua", function()
    dir = H.tmpdir()
    return { workers = 1, env = "UPLOAD_DIR=" .. H.quote(dir), options = { ["max-body-size"] = "64M" } }
  end)
  local ng = H.nginx_for(srv)

  it("shows the upload form on GET", function()
    local status, _, body = H.http(ng.port, "GET", "/")
    assert.equal(200, status)
    assert.matches('enctype="multipart/form-data"', body, 1, true)
  end)

  it("saves the uploaded files and lists them", function()
    local B = "exampleBoundary"
    local data = rand_bytes(2 * 1048576, 3)
    local parts = { field("comment", "two files"), file("files", "one.bin", "application/octet-stream", data),
      file("files", "../../etc/evil name.txt", "text/plain", "text file\n") }
    local status, _, body = H.http(ng.port, "POST", "/", build(B, parts), { ["Content-Type"] = ctype_of(B) })
    assert.equal(200, status)
    assert.matches("comment: two files", body, 1, true)
    assert.matches("one.bin: 2097152 bytes", body, 1, true)
    assert.matches("evil_name.txt: 10 bytes", body, 1, true)
    assert.is_true(data == H.read_file(dir .. "/one.bin"))
    assert.equal("text file\n", H.read_file(dir .. "/evil_name.txt"))
  end)
end)
