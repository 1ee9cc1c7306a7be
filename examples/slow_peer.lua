-- slow_peer.lua: a peer to try docs/services.md against: every request gets a short text answer
-- after ?delay= seconds (default 0). The wait is scgi.sleep, so one worker holds any number of
-- them at once. Serve it behind nginx (HTTP, or HTTPS with a throwaway certificate), as
-- examples/services.sh does.
--   GET /quote?delay=1  ->  "/quote after 1 s (answer 1)"
local scgi = require "scgi"

local answers = 0

return function(headers, client)
  local delay = tonumber(scgi.parse_query(headers.QUERY_STRING).delay) or 0
  if delay > 0 then scgi.sleep(delay) end
  answers = answers + 1
  client:respond(200, { ["Content-Type"] = "text/plain" },
    ("%s after %g s (answer %d)\n"):format(scgi.path_info(headers), delay, answers))
end
