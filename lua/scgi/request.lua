-- scgi.request: reading what a request carries: URL encoding, query strings and forms, cookies,
-- PATH_INFO and SCRIPT_NAME. Plain Lua: needs neither the server nor scgi.core.
local type, error, tonumber = type, error, tonumber
local byte, char, find, format, gsub, sub, match, lower =
  string.byte, string.char, string.find, string.format, string.gsub, string.sub, string.match,
  string.lower

local M = {}

-- Raises "bad argument #n to 'fname' (msg)" at the caller of the function that calls this.
local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- Raises a bad argument error unless v is a string (or nil when optional is set).
local function check_string(v, n, fname, optional)
  if type(v) == "string" or (optional and v == nil) then return end
  argerror(n, fname, "string expected, got " .. (v == nil and "no value" or type(v)))
end

-- The byte of a %XX escape whose two hex digits are h.
local function hex_byte(h) return char(tonumber(h, 16)) end

-- The byte c as %XX with upper-case hex digits.
local function escape_byte(c) return format("%%%02X", byte(c)) end

-- Decodes %XX escapes in s (and + as a space when plus is true); malformed escapes stay as they
-- are. url_decode(url_encode(s)) == s.
function M.url_decode(s, plus)
  check_string(s, 1, "url_decode")
  if plus then s = gsub(s, "%+", " ") end
  return (gsub(s, "%%(%x%x)", hex_byte))
end

-- Encodes every byte of s but the RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) as %XX.
function M.url_encode(s)
  check_string(s, 1, "url_encode")
  return (gsub(s, "[^A-Za-z0-9%-%._~]", escape_byte))
end

-- Adds value under name: the first one as a string, the next ones turn it into a list in order.
local function add_value(t, name, value)
  local old = t[name]
  if old == nil then
    t[name] = value
  elseif type(old) == "table" then
    old[#old + 1] = value
  else
    t[name] = { old, value }
  end
end

-- Parses application/x-www-form-urlencoded text s into name -> value (or list of values); the
-- shared body of parse_query and parse_form.
local function parse_urlencoded(s, fname)
  check_string(s, 1, fname, true)
  local t = {}
  if s == nil then return t end
  for piece in s:gmatch("[^&]+") do
    local eq = find(piece, "=", 1, true)
    local name = eq and sub(piece, 1, eq - 1) or piece
    local value = eq and sub(piece, eq + 1) or ""
    name = M.url_decode(name, true)
    if name ~= "" then add_value(t, name, M.url_decode(value, true)) end
  end
  return t
end

-- The parameters of a query string (headers.QUERY_STRING): name -> string, or a list of
-- strings for a name given more than once. nil or "" gives {}.
function M.parse_query(s) return parse_urlencoded(s, "parse_query") end

-- The fields of an application/x-www-form-urlencoded body, like parse_query.
function M.parse_form(body) return parse_urlencoded(body, "parse_form") end

-- True if the request's Content-Type is application/x-www-form-urlencoded.
local function is_urlencoded(headers)
  local ctype = lower(headers.CONTENT_TYPE or "")
  return match(ctype, "^%s*application/x%-www%-form%-urlencoded%s*;?") ~= nil
end

-- Reads an urlencoded body of at most max bytes (default 1 MiB) from client and parses it:
-- the fields, or nil and a message (wrong Content-Type, too large, client gone).
function M.read_form(headers, client, max)
  if type(headers) ~= "table" then argerror(1, "read_form", "table expected, got " .. type(headers)) end
  if client == nil then argerror(2, "read_form", "client expected, got no value") end
  if max ~= nil and type(max) ~= "number" then argerror(3, "read_form", "number expected, got " .. type(max)) end
  max = max or 1048576
  if not is_urlencoded(headers) then return nil, "not an application/x-www-form-urlencoded body" end
  local length = tonumber(headers.CONTENT_LENGTH or "0") or 0
  if length > max then return nil, "form body too large" end
  if length == 0 then return {} end
  local body, err = client:read("a")
  if body == nil then
    if err then return nil, "client " .. err end
    body = ""
  end
  return M.parse_form(body)
end

-- Removes spaces and tabs at both ends of s.
local function trim(s) return match(s, "^[ \t]*(.-)[ \t]*$") end

-- The cookies of a Cookie header (headers.HTTP_COOKIE) as name -> value: "a=1; b=2", values in
-- double quotes unquoted, the first of a repeated name wins; nil or "" gives {}.
function M.parse_cookies(s)
  check_string(s, 1, "parse_cookies", true)
  local t = {}
  if s == nil then return t end
  for piece in s:gmatch("[^;]+") do
    local name, value = match(piece, "^([^=]*)=(.*)$")
    if name then
      name, value = trim(name), trim(value)
      value = match(value, '^"(.*)"$') or value
      if name ~= "" and t[name] == nil then t[name] = value end
    end
  end
  return t
end

-- The path of a request URI: without the query string, the fragment and any scheme://authority.
local function uri_path(uri)
  local path = match(uri, "^[^?#]*")
  path = gsub(path, "^%a[%w+.-]*://[^/]*", "", 1)
  return path
end

-- True if path is prefix, or starts with prefix followed by "/".
local function has_prefix(path, prefix)
  if sub(path, 1, #prefix) ~= prefix then return false end
  local nextc = sub(path, #prefix + 1, #prefix + 1)
  return nextc == "" or nextc == "/"
end

-- PATH_INFO and SCRIPT_NAME of a request. The web server's own are used when it sent them;
-- otherwise SCRIPT_NAME is "" and PATH_INFO is DOCUMENT_URI (nginx's $uri, already decoded) or
-- the decoded path of REQUEST_URI without its query string ("/" when there is neither). A
-- SCRIPT_NAME sent without PATH_INFO is taken off the front of the derived path.
function M.path_info(headers)
  if type(headers) ~= "table" then argerror(1, "path_info", "table expected, got " .. type(headers)) end
  local script_name = headers.SCRIPT_NAME or ""
  local path_info = headers.PATH_INFO
  if path_info ~= nil then return path_info, script_name end
  local doc, uri = headers.DOCUMENT_URI, headers.REQUEST_URI
  if doc ~= nil and doc ~= "" then
    path_info = doc
  elseif uri ~= nil and uri ~= "" then
    path_info = M.url_decode(uri_path(uri))
  else
    path_info = "/"
  end
  if script_name ~= "" and has_prefix(path_info, script_name) then
    path_info = sub(path_info, #script_name + 1)
  end
  return path_info, script_name
end

return M
