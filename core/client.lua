-- client.lua: the methods of scgi.client written in Lua; compiled into the C module.
local methods = ...
local type, pairs, ipairs, tostring, error = type, pairs, ipairs, tostring, error
local concat, mtype, tointeger, find = table.concat, math.type, math.tointeger, string.find

local reasons = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
  [202] = "Accepted", [203] = "Non-Authoritative Information", [204] = "No Content",
  [205] = "Reset Content", [206] = "Partial Content", [300] = "Multiple Choices",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request",
  [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout",
  [409] = "Conflict", [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable", [417] = "Expectation Failed", [418] = "I'm a teapot",
  [421] = "Misdirected Request", [422] = "Unprocessable Content", [425] = "Too Early",
  [426] = "Upgrade Required", [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}
methods.reasons = reasons

-- Raises "bad argument" at the caller of respond (level: how far up that caller is from here).
local function argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), (level or 2) + 1)
end

local function header_line(parts, name, value)
  value = tostring(value)
  if find(name, "[\r\n:]") or name == "" then argerror(2, "respond", "invalid header name '" .. name .. "'", 3) end
  if find(value, "[\r\n]") then argerror(2, "respond", "header '" .. name .. "' has CR or LF in its value", 3) end
  parts[#parts + 1] = name .. ": " .. value .. "\r\n"
end

-- Writes a whole CGI response: status (a number with an integral value, or a string of three
-- digits and an optional reason phrase, "404 Not Found"), headers (name -> string,
-- number or list of them) and body (nil, a string, a list of strings or an iterator function).
function methods:respond(status, headers, body)
  local line
  if mtype(status) == "float" and tointeger(status) then status = tointeger(status) end
  if mtype(status) == "integer" then
    if status < 100 or status > 999 then argerror(1, "respond", "status out of range") end
    line = status .. " " .. (reasons[status] or "Unknown")
  elseif type(status) == "string" then
    if find(status, "[\r\n]") then argerror(1, "respond", "status has CR or LF in it") end
    if not find(status, "^%d%d%d$") and not find(status, "^%d%d%d ") then
      argerror(1, "respond", "status must start with three digits, as \"404 Not Found\"")
    end
    line = status
  elseif status == nil then
    line = "200 OK"
  elseif type(status) == "number" then
    argerror(1, "respond", "status out of range")
  else
    argerror(1, "respond", "number or string expected, got " .. type(status))
  end
  local parts = { "Status: ", line, "\r\n" }
  if headers ~= nil then
    if type(headers) ~= "table" then argerror(2, "respond", "table expected, got " .. type(headers)) end
    for name, value in pairs(headers) do
      if type(name) ~= "string" then argerror(2, "respond", "header names must be strings") end
      if type(value) == "table" then
        for _, item in ipairs(value) do header_line(parts, name, item) end
      else
        header_line(parts, name, value)
      end
    end
  end
  parts[#parts + 1] = "\r\n"
  local kind = type(body)
  if kind == "string" then
    parts[#parts + 1] = body
    return self:write(concat(parts))
  elseif kind == "table" then
    for _, chunk in ipairs(body) do parts[#parts + 1] = chunk end
    return self:write(concat(parts))
  elseif kind == "function" then
    local ok, err, code = self:write(concat(parts))
    if not ok then return nil, err, code end
    for chunk in body do
      ok, err, code = self:write(chunk)
      if not ok then return nil, err, code end
    end
    return self
  elseif body == nil then
    return self:write(concat(parts))
  end
  argerror(3, "respond", "string, table or function expected, got " .. kind)
end
