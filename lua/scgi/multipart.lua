-- scgi.multipart: a streaming multipart/form-data reader over client:read(n). It holds at most
-- one read chunk plus a boundary's length of the body: no part is ever kept whole in memory.
-- Malformed bodies give nil and a message; only misuse raises. Plain Lua: needs no scgi.core.
local type, error, setmetatable, tostring, tonumber = type, error, setmetatable, tostring, tonumber
local find, sub, match, lower, gsub, format, char =
  string.find, string.sub, string.match, string.lower, string.gsub, string.format, string.char
local concat, max, floor = table.concat, math.max, math.floor

local M = {}

local DEFAULT_CHUNK = 65536
local DEFAULT_MAX_HEADER = 16384

-- Raises "bad argument #n to 'fname' (msg)" at the caller of the function that calls this.
local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- Undoes the backslash escapes of a quoted-string: only \" and \\ (a lone backslash, as in
-- an old browser's C:\path, stays).
local function unquote(s)
  return (gsub(s, '\\(["\\])', "%1"))
end

-- The value of a RFC 5987 ext-value (charset'lang'%XX...): the bytes, undecoded from charset.
local function ext_value(s)
  local value = match(s, "^[^']*'[^']*'(.*)$")
  if not value then return nil end
  return (gsub(value, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- The quoted-string of s that opens at position p (a '"'): its unescaped text and the position
-- after its closing quote; nil when it is not closed.
local function quoted_string(s, p)
  local i = p + 1
  while true do
    local q = find(s, '["\\]', i)
    if not q then return nil end
    if sub(s, q, q) == '"' then return unquote(sub(s, p + 1, q - 1)), q + 1 end
    i = q + 2
  end
end

-- s without spaces and tabs at either end.
local function trim(s) return match(s, "^[ \t]*(.-)[ \t]*$") end

-- Parses 'value; a=b; c="d"' into the lower-cased value and lower-cased name -> parameter.
local function parse_params(s)
  local params = {}
  local pos = find(s, ";", 1, true)
  while pos do
    local name, p = match(s, "^;%s*([^=;%s]+)%s*=%s*()", pos)
    local after = pos + 1
    if name then
      local v
      if sub(s, p, p) == '"' then v, after = quoted_string(s, p) end
      if v == nil then
        v, after = match(s, "^([^;]*)()", p)
        v = trim(v)
      end
      params[lower(name)] = v
    end
    pos = find(s, ";", after, true)
  end
  return lower(trim(match(s, "^[^;]*"))), params
end

-- The boundary of a multipart/form-data Content-Type, or nil and a message.
local function boundary_of(ctype)
  if ctype == nil or ctype == "" then return nil, "no Content-Type" end
  local mtype, params = parse_params(ctype)
  if mtype ~= "multipart/form-data" then return nil, "not a multipart/form-data body" end
  local b = params.boundary
  if b == nil or b == "" then return nil, "missing boundary in Content-Type" end
  if #b > 200 or find(b, "[\r\n]") then return nil, "invalid boundary in Content-Type" end
  return b
end

-- Parses a part's header block (lines without the final empty one) into lower-case name ->
-- value (repeated names joined with ", "); nil and a message for a malformed line.
local function parse_part_headers(block)
  local headers, last = {}, nil
  for line in gsub(block, "\r\n", "\n"):gmatch("[^\n]+") do
    if find(line, "^[ \t]") and last then
      headers[last] = headers[last] .. " " .. match(line, "^%s*(.-)%s*$")
    else
      local name, value = match(line, "^([^:%s]+)%s*:%s*(.-)%s*$")
      if not name then return nil, "malformed part header line" end
      name = lower(name)
      headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
      last = name
    end
  end
  return headers
end

-- The part record handed to the caller: name, filename, content_type and all headers.
local function make_part(headers)
  local disp = headers["content-disposition"]
  local part = { headers = headers, content_type = headers["content-type"] or "text/plain" }
  if disp then
    local kind, params = parse_params(disp)
    part.disposition = kind
    part.name = params.name
    part.filename = params["filename*"] and ext_value(params["filename*"]) or params.filename
  end
  return part
end

local Reader = {}
Reader.__index = Reader

-- Reads the next chunk of the body into the buffer: true, false at the end of the body, or
-- nil and a message when the client went away.
function Reader:fill()
  if self.eof then return false end
  local data, err = self.client:read(self.chunk_size)
  if data == nil then
    if err then return nil, "client " .. tostring(err) end
    self.eof = true
    return false
  end
  self.buf = self.buf .. data
  return true
end

-- Sets the reader into its failed state and returns nil, message.
function Reader:fail(msg)
  self.state, self.error = "error", msg
  self.buf = ""
  return nil, msg
end

-- Skips the preamble up to the first delimiter: true, or nil and a message.
function Reader:skip_preamble()
  local keep = #self.delim - 1
  while true do
    local s, e = find(self.buf, self.delim, 1, true)
    if s then
      self.buf = sub(self.buf, e + 1)
      self.state = "boundary"
      return true
    end
    if #self.buf > keep then self.buf = sub(self.buf, -keep) end
    local ok, err = self:fill()
    if ok == nil then return self:fail(err) end
    if not ok then return self:fail("missing boundary: the body has no multipart delimiter") end
  end
end

-- Makes the buffer hold at least n bytes: true, or nil and a message (truncated or gone).
function Reader:need(n)
  while #self.buf < n do
    local ok, err = self:fill()
    if ok == nil then return self:fail(err) end
    if not ok then return self:fail("truncated body: it ends in a boundary line") end
  end
  return true
end

-- After a delimiter: "--" ends the body (false), else skips padding and CRLF (true).
function Reader:boundary_line()
  local ok, err = self:need(2)
  if not ok then return nil, err end
  if sub(self.buf, 1, 2) == "--" then
    self.state, self.buf = "done", ""
    return false
  end
  while true do
    local s, e = find(self.buf, "^[ \t]*\r\n")
    if s then
      self.buf = sub(self.buf, e + 1)
      return true
    end
    if find(self.buf, "[^ \t\r]") or find(self.buf, "\r[^\n]") then
      return self:fail("malformed boundary line")
    end
    if #self.buf > 1024 then return self:fail("malformed boundary line") end
    ok, err = self:need(#self.buf + 1)
    if not ok then return nil, err end
  end
end

-- Reads a part's header block; the part record, or nil and a message.
function Reader:part_headers()
  local s, e
  while true do
    if sub(self.buf, 1, 2) == "\r\n" then
      s, e = 1, 2
      break
    end
    s, e = find(self.buf, "\r\n\r\n", 1, true)
    if s then break end
    if #self.buf > self.max_header_size then return self:fail("part headers too large") end
    local ok, err = self:fill()
    if ok == nil then return self:fail(err) end
    if not ok then return self:fail("truncated body: it ends in a part's headers") end
  end
  if s - 1 > self.max_header_size then return self:fail("part headers too large") end
  local headers, err = parse_part_headers(sub(self.buf, 1, s - 1))
  if not headers then return self:fail(err) end
  self.buf = sub(self.buf, e + 1)
  self.state = "data"
  return make_part(headers)
end

-- The next part's record (name, filename, content_type, disposition, headers), skipping what
-- is left of the current part; nil at the end of the body; nil and a message on a malformed
-- body or a client that went away.
function Reader:next_part()
  if self.state == "error" then return nil, self.error end
  if self.state == "start" then
    local ok, err = self:skip_preamble()
    if not ok then return nil, err end
  end
  while self.state == "data" do
    local chunk, err = self:read()
    if chunk == nil and err then return nil, err end
  end
  if self.state == "done" then return nil end
  local more, err = self:boundary_line()
  if more == nil then return nil, err end
  if not more then return nil end
  local part
  part, err = self:part_headers()
  if not part then return nil, err end
  self.part = part
  return part
end

-- The next chunk of the current part's data (at most about chunk_size bytes); nil at the
-- part's end; nil and a message on a truncated body or a client that went away.
function Reader:read()
  if self.state == "error" then return nil, self.error end
  if self.state ~= "data" then return nil end
  local delim, keep = self.delim, #self.delim - 1
  while true do
    local buf = self.buf
    local s, e = find(buf, delim, 1, true)
    if s then
      self.buf = sub(buf, e + 1)
      self.state = "boundary"
      if s > 1 then
        return sub(buf, 1, s - 1)
      end
      return nil
    end
    if #buf > keep then
      self.buf = sub(buf, -keep)
      return sub(buf, 1, #buf - keep)
    end
    local ok, err = self:fill()
    if ok == nil then return self:fail(err) end
    if not ok then return self:fail("truncated body: it ends inside a part") end
  end
end

-- The rest of the current part's data as one string of at most max bytes (default 1 MiB); nil
-- and a message if it is longer, truncated or the client went away.
function Reader:read_all(limit)
  limit = limit or 1048576
  local pieces, size = {}, 0
  while true do
    local chunk, err = self:read()
    if chunk == nil then
      if err then return nil, err end
      return concat(pieces)
    end
    size = size + #chunk
    if size > limit then return self:fail("part larger than " .. limit .. " bytes") end
    pieces[#pieces + 1] = chunk
  end
end

-- Raises bad argument errors for a headers table or client that cannot be used.
local function check_args(fname, headers, client, options, opt_index)
  if type(headers) ~= "table" then argerror(1, fname, "table expected, got " .. type(headers)) end
  local ct = type(client)
  if ct ~= "table" and ct ~= "userdata" then argerror(2, fname, "client expected, got " .. ct) end
  if options ~= nil and type(options) ~= "table" then
    argerror(opt_index, fname, "table expected, got " .. type(options))
  end
end

-- Makes a reader for the request's multipart body: reader:next_part() and reader:read(); or
-- nil and a message when the Content-Type is not multipart/form-data with a boundary.
-- options: chunk_size (bytes per client:read, default 64 KiB), max_header_size (16 KiB).
function M.reader(headers, client, options)
  check_args("multipart_reader", headers, client, options, 3)
  options = options or {}
  local boundary, err = boundary_of(headers.CONTENT_TYPE)
  if not boundary then return nil, err end
  local delim = "\r\n--" .. boundary
  local chunk_size = options.chunk_size or DEFAULT_CHUNK
  if type(chunk_size) ~= "number" or chunk_size < 1 then
    argerror(3, "multipart_reader", "chunk_size must be a positive number")
  end
  return setmetatable({
    client = client, delim = delim, buf = "\r\n", state = "start", eof = false,
    chunk_size = max(floor(chunk_size), #delim),
    max_header_size = options.max_header_size or DEFAULT_MAX_HEADER,
  }, Reader)
end

-- Calls cb(...) if cb is set; a callback returning false (and a message) stops the reading.
local function call(cb, ...)
  if cb == nil then return true end
  local r, msg = cb(...)
  if r == false then return nil, msg or "stopped by a callback" end
  return true
end

-- Streams the multipart body through callbacks: on_part(part), on_data(chunk, part),
-- on_part_end(part). Returns the number of parts, or nil and a message on a malformed body, a
-- client that went away, or a callback that returned false.
function M.parse(headers, client, handlers, options)
  check_args("multipart", headers, client, options, 4)
  if type(handlers) ~= "table" then argerror(3, "multipart", "table expected, got " .. type(handlers)) end
  local reader, err = M.reader(headers, client, options)
  if not reader then return nil, err end
  local count = 0
  while true do
    local part
    part, err = reader:next_part()
    if not part then
      if err then return nil, err end
      return count
    end
    count = count + 1
    local ok, msg = call(handlers.on_part, part)
    if not ok then return nil, msg end
    while true do
      local chunk
      chunk, err = reader:read()
      if chunk == nil then
        if err then return nil, err end
        break
      end
      ok, msg = call(handlers.on_data, chunk, part)
      if not ok then return nil, msg end
    end
    ok, msg = call(handlers.on_part_end, part)
    if not ok then return nil, msg end
  end
end

-- The boundary parameter of a Content-Type, or nil and a message (exported for tests and tools).
M.boundary = boundary_of
-- Content-Disposition-like parsing: the lower-cased value and its parameters.
M.parse_params = parse_params

-- The module is callable: scgi.multipart(...) is scgi.multipart.parse(...).
setmetatable(M, { __call = function(_, ...) return M.parse(...) end })

return M
