-- scgi.response: response helpers that become methods of every client: client:redirect and
-- client:sse (Server-Sent Events). require "scgi" installs them into scgi.client_methods; this
-- module itself needs no scgi.core, so it also works on any object with write/flush/closed.
local type, error, setmetatable, pairs, tostring = type, error, setmetatable, pairs, tostring
local find, format, gsub, lower, mtype = string.find, string.format, string.gsub, string.lower, math.type
local concat = table.concat

local M = {}

-- Raises "bad argument #n to 'fname' (msg)" at the caller of the function that calls this.
local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- True if s has a CR, LF or NUL byte in it.
local function has_crlf(s) return find(s, "[\r\n\0]") ~= nil end

-- Writes a redirect to url: status (default 302, any 3xx), a Location header and a short text
-- body. Returns the client, or nil, "closed", code if the client went away.
function M.redirect(client, url, status)
  if type(url) ~= "string" then argerror(1, "redirect", "string expected, got " .. type(url)) end
  if has_crlf(url) then argerror(1, "redirect", "CR, LF or NUL in the url") end
  if url == "" then argerror(1, "redirect", "empty url") end
  status = status or 302
  if mtype(status) ~= "integer" or status < 300 or status > 399 then
    argerror(2, "redirect", "3xx status expected, got " .. tostring(status))
  end
  local reason = client.reasons and client.reasons[status] or "Redirect"
  return client:respond(status, { Location = url, ["Content-Type"] = "text/plain; charset=utf-8" },
    status .. " " .. reason .. ": " .. url .. "\n")
end

local SSE = {}
SSE.__index = SSE

-- The headers of an event stream: the defaults, then extra's (replacing a default of the same
-- name in any case); raises bad argument for a malformed extra table.
local function sse_headers(extra)
  local h = { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache",
    ["X-Accel-Buffering"] = "no" }
  if extra == nil then return h end
  if type(extra) ~= "table" then argerror(1, "sse", "table expected, got " .. type(extra)) end
  for name, value in pairs(extra) do
    if type(name) ~= "string" then argerror(1, "sse", "header names must be strings") end
    for default in pairs(h) do
      if lower(default) == lower(name) then h[default] = nil end
    end
    h[name] = value
  end
  return h
end

-- Starts an event stream: writes status 200 and the SSE headers (plus the optional extra
-- headers) and flushes them. Returns the stream, or nil, "closed", code.
function M.sse(client, headers)
  local h = sse_headers(headers)
  local ok, err, code = client:respond(200, h)
  if not ok then return nil, err, code end
  ok, err, code = client:flush()
  if not ok then return nil, err, code end
  return setmetatable({ client = client }, SSE)
end

-- Writes text and flushes, unless the client is gone: the stream, or nil, "closed", code.
function SSE:write(text)
  local client = self.client
  if client:closed() then return nil, "closed" end
  local ok, err, code = client:write(text)
  if ok then ok, err, code = client:flush() end
  if not ok then return nil, err, code end
  return self
end

-- Appends "prefix line\n" to out for each line of s (split at CRLF, CR or LF).
local function add_lines(out, prefix, s)
  s = gsub(gsub(s, "\r\n", "\n"), "\r", "\n")
  for line in (s .. "\n"):gmatch("(.-)\n") do out[#out + 1] = prefix .. line .. "\n" end
end

-- Sends one event: data (a string or number; several lines become several data: lines), an
-- optional event name and id; flushes. Returns the stream, or nil, "closed", code.
function SSE:send(data, event, id)
  local kind = type(data)
  if kind ~= "string" and kind ~= "number" then
    argerror(1, "send", "string expected, got " .. (data == nil and "no value" or kind))
  end
  local out = {}
  if event ~= nil then
    if type(event) ~= "string" then argerror(2, "send", "string expected, got " .. type(event)) end
    if has_crlf(event) then argerror(2, "send", "CR, LF or NUL in the event name") end
    out[#out + 1] = "event: " .. event .. "\n"
  end
  if id ~= nil then
    if type(id) ~= "string" and type(id) ~= "number" then
      argerror(3, "send", "string expected, got " .. type(id))
    end
    id = tostring(id)
    if has_crlf(id) then argerror(3, "send", "CR, LF or NUL in the id") end
    out[#out + 1] = "id: " .. id .. "\n"
  end
  add_lines(out, "data: ", tostring(data))
  out[#out + 1] = "\n"
  return self:write(concat(out))
end

-- Sends a comment (ignored by browsers; a keep-alive through proxies); flushes. Returns the
-- stream, or nil, "closed", code.
function SSE:comment(text)
  if text ~= nil and type(text) ~= "string" then
    argerror(1, "comment", "string expected, got " .. type(text))
  end
  if text == nil or text == "" then return self:write(":\n\n") end
  local out = {}
  add_lines(out, ": ", text)
  out[#out + 1] = "\n"
  return self:write(concat(out))
end

-- Tells the browser how long to wait before reconnecting (milliseconds); flushes.
function SSE:retry(ms)
  if mtype(ms) ~= "integer" or ms < 0 then argerror(1, "retry", "non-negative integer expected") end
  return self:write("retry: " .. ms .. "\n\n")
end

-- True once the client went away or the response ended.
function SSE:closed() return self.client:closed() end

-- Ends the stream (closes the client's response).
function SSE:close() return self.client:close() end

-- Adds redirect and sse to a methods table (scgi.client_methods); returns it.
function M.install(methods)
  if type(methods) ~= "table" then argerror(1, "install", "table expected, got " .. type(methods)) end
  methods.redirect = M.redirect
  methods.sse = M.sse
  return methods
end

M.SSE = SSE

return M
