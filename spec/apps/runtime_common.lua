-- spec/apps/runtime_common.lua: what the runtime spec apps share (`require "runtime_common"`): the
-- decoded query string, and answers written as Lua source that the specs load back (H.call).
local scgi = require "scgi"
local R = require "router"

local C = {}

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The query string as a table of name -> decoded value.
function C.query(headers)
  local q = R.query(headers)
  for k, v in pairs(q) do q[k] = unescape(v) end
  return q
end

-- A value as Lua source: strings, numbers (floats exactly, as %q writes them), booleans and nil
-- as themselves, tables recursively (cycles and other types as a "type: tostring" string).
local function source(v, seen)
  local kind = type(v)
  if kind == "string" then return ("%q"):format(v) end
  if kind == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    return ("%q"):format(v)
  end
  if kind == "boolean" or kind == "nil" then return tostring(v) end
  if kind == "table" and not seen[v] then
    seen[v] = true
    local out = {}
    for k, x in pairs(v) do out[#out + 1] = ("[%s]=%s"):format(source(k, seen), source(x, seen)) end
    seen[v] = nil
    return "{" .. table.concat(out, ",") .. "}"
  end
  return ("%q"):format(kind .. ": " .. tostring(v))
end

function C.source(v) return source(v, {}) end

-- The values of a call as a table with n (so trailing nils show).
function C.pack(...) return { n = select("#", ...), ... } end

-- Spawns n tasks at once, the i-th running fn(i), then waits for each in order; returns what
-- each scgi.wait returned (C.pack), in order, and the seconds all that took.
function C.spawn_all(n, fn)
  local t0 = scgi.now()
  local tasks = {}
  for i = 1, n do tasks[i] = scgi.spawn(fn, i) end
  local out = {}
  for i, t in ipairs(tasks) do out[i] = C.pack(scgi.wait(t)) end
  return out, scgi.now() - t0
end

-- Writes a 200 answer whose body is `return <t as Lua source>`.
function C.answer(client, t)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nreturn ", C.source(t))
end

-- The SCGI bytes of a GET for uri (what nginx would send, trimmed): a request a handler or a timer
-- sends to its own server.
function C.scgi_get(uri)
  local block = "CONTENT_LENGTH\0" .. "0\0SCGI\0" .. "1\0REQUEST_METHOD\0GET\0REQUEST_URI\0" .. uri ..
    "\0QUERY_STRING\0" .. (uri:match("%?(.*)$") or "") .. "\0"
  return #block .. ":" .. block .. ","
end

return C
