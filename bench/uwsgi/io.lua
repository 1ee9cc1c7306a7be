-- bench/uwsgi/io.lua: the transfer apps of bench/compare.sh as a WSAPI application, for uWSGI's
-- Lua plugin. POST /upload reads the whole body in 64 KiB chunks (env.input:read(n)) and answers
-- its size; GET /download sends 256 MiB as 4096 chunks of 64 KiB (one per iterator step).
local CHUNK = 65536
local chunk = string.rep("x", CHUNK)

return function(env)
  if env.REQUEST_URI == "/download" then
    return 200, { ["Content-Type"] = "application/octet-stream",
                  ["Content-Length"] = tostring(4096 * CHUNK) },
      coroutine.wrap(function()
        for _ = 1, 4096 do coroutine.yield(chunk) end
      end)
  end
  local n = 0
  while true do
    local s = env.input:read(CHUNK)
    if s == nil or #s == 0 then break end
    n = n + #s
  end
  return 200, { ["Content-Type"] = "text/plain" },
    coroutine.wrap(function() coroutine.yield(n .. "\n") end)
end
