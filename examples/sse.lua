-- sse.lua: Server-Sent Events. "/" is a page whose EventSource listens to "/events"; "/events"
-- sends a "tick" event every second (?interval=S to change it) with a growing id, and a
-- keep-alive comment every 10 ticks. Each stream ends after 30 events (?count=N), well inside
-- scgi-lua's --request-timeout; the browser then reconnects by itself and sends Last-Event-ID,
-- so the count goes on where it stopped. scgi.sleep parks only this request: one worker serves
-- many streams at once. Behind nginx, client:sse's X-Accel-Buffering: no header turns off
-- nginx's buffering for the stream (or set `scgi_buffering off;` on the location).
--   APP=examples/sse.lua make run
local scgi = require "scgi"

local page = [[
<!doctype html>
<meta charset="utf-8">
<title>scgi-lua events</title>
<p>Ticks: <span id="n">none yet</span>
<pre id="log"></pre>
<script>
  const source = new EventSource("events");
  source.addEventListener("tick", (e) => {
    document.getElementById("n").textContent = e.lastEventId;
    document.getElementById("log").textContent = e.data + "\n" + document.getElementById("log").textContent;
  });
</script>
]]

-- Streams ticks until count events were sent or the client went away.
local function events(headers, client)
  local q = scgi.parse_query(headers.QUERY_STRING)
  local count = math.min(tonumber(q.count) or 30, 1000)
  local interval = math.max(tonumber(q.interval) or 1, 0.01)
  local id = math.tointeger(tonumber(headers.HTTP_LAST_EVENT_ID)) or 0
  local sse = client:sse()
  if not sse then return end -- the client is already gone
  sse:retry(1000)
  for i = 1, count do
    id = id + 1
    local ok = sse:send(("tick %d at %s\nworker %d"):format(id, os.date("!%H:%M:%S"), scgi.worker().id),
      "tick", id)
    if not ok then return end -- "closed": the browser went away
    if i % 10 == 0 and not sse:comment("keep-alive") then return end
    scgi.sleep(interval)
  end
end

return function(headers, client)
  local path = scgi.path_info(headers)
  if path == "/events" or path:match("/events$") then return events(headers, client) end
  client:respond(200, { ["Content-Type"] = "text/html; charset=utf-8" }, page)
end
