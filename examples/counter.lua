-- counter.lua: a small JSON API over a counter shared by every worker (scgi.shared).
-- Run: scgi-lua examples/counter.lua --shared counters:1M
--   GET  /            -> {"hits": 42}
--   POST /add?n=5     -> {"hits": 47}
--   DELETE /          -> {"hits": 0}
local scgi = require "scgi"

-- A JSON string: quoted, with '"', '\' and control characters escaped.
local function str(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c) return ("\\u%04x"):format(c:byte()) end) .. '"'
end

local function json(client, status, t)
  local parts = {}
  for k, v in pairs(t) do parts[#parts + 1] = str(k) .. ":" .. (math.tointeger(v) or str(v)) end
  client:respond(status, { ["Content-Type"] = "application/json" }, "{" .. table.concat(parts, ",") .. "}\n")
end

return function(headers, client)
  local counters = scgi.shared.counters
  if not counters then
    return json(client, 500, { error = "start scgi-lua with --shared counters:1M" })
  end
  local method = headers.REQUEST_METHOD
  if method == "GET" then
    return json(client, 200, { hits = counters:incr("hits", 1, 0) })
  elseif method == "POST" then
    local n = math.tointeger(tonumber(scgi.parse_query(headers.QUERY_STRING).n or "1"))
    if not n then return json(client, 400, { error = "n must be an integer" }) end
    return json(client, 200, { hits = counters:incr("hits", n, 0) })
  elseif method == "DELETE" then
    counters:set("hits", 0)
    return json(client, 200, { hits = 0 })
  end
  client:respond(405, { Allow = "GET, POST, DELETE" }, "")
end
