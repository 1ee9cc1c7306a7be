-- spec/apps/ops_instance.lua: the app of spec/failover_spec.lua: answers the name in OPS_INSTANCE
-- after ?ms= milliseconds (default 20) of scgi.sleep, so that stopping finds requests in flight.
local scgi = require "scgi"
local name = os.getenv("OPS_INSTANCE") or "?"

return function(headers, client)
  local ms = tonumber((headers.QUERY_STRING or ""):match("ms=(%d+)")) or 20
  if ms > 0 then scgi.sleep(ms / 1000) end
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", name, "\n")
end
