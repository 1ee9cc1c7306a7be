-- fanout.lua: several outbound calls at once from one request. Each call runs in a task
-- (scgi.spawn) of this request; scgi.wait collects them in order, so the request takes as long as
-- the slowest call, not their sum. ?deadline= kills (scgi.kill) the calls still running then.
-- Run: sh examples/services.sh examples/fanout.lua --workers 1
--   curl 'http://127.0.0.1:8080/?n=5&delay=1'               five 1 s calls: about 1 s
--   curl 'http://127.0.0.1:8080/?n=3&delay=2&deadline=0.5'  each one killed after 0.5 s
local http = require "socket.http"
local scgi = require "scgi"

local upstream = os.getenv("HTTP_URL") or "http://127.0.0.1:8081"

local function call(i, delay)
  local body, code = http.request(("%s/part%d?delay=%g"):format(upstream, i, delay))
  if not body then error("part " .. i .. ": " .. tostring(code)) end -- wait gives false, message
  return code, body
end

return function(headers, client)
  local q = scgi.parse_query(headers.QUERY_STRING)
  local n, delay, deadline = tonumber(q.n) or 5, tonumber(q.delay) or 1, tonumber(q.deadline)
  local t0 = scgi.now()
  local tasks = {}
  -- each task starts on the worker's next loop iteration: here, once this handler waits
  for i = 1, n do tasks[i] = scgi.spawn(call, i, delay) end
  local watchdog
  if deadline then
    watchdog = scgi.spawn(function()
      scgi.sleep(deadline)
      for _, t in ipairs(tasks) do scgi.kill(t) end -- an ended task: nil, "already finished"
    end)
  end
  local lines = {}
  for i, t in ipairs(tasks) do
    local ok, code, body = scgi.wait(t) -- true, results... or false, the error ("killed")
    lines[i] = ok and ("%d %s"):format(code, body) or ("failed: %s\n"):format(code)
  end
  -- a request ends when its handler and all its tasks have: stop the watchdog's sleep
  if watchdog then scgi.kill(watchdog) end
  lines[#lines + 1] = ("%d calls in %.3f s\n"):format(n, scgi.now() - t0)
  client:respond(200, { ["Content-Type"] = "text/plain" }, lines)
end
