-- bench/apps/upload.lua: request bodies read two ways, answering the size read (500 when it is
-- not CONTENT_LENGTH): REQUEST_URI /all reads client:read("a"), anything else reads 64 KiB
-- chunks with client:read(65536) until nil.
local CHUNK = 65536

return function(headers, client)
  local n = 0
  if headers.REQUEST_URI == "/all" then
    n = #client:read("a")
  else
    while true do
      local s = client:read(CHUNK)
      if not s then break end
      n = n + #s
    end
  end
  local status = n == tonumber(headers.CONTENT_LENGTH) and "200 OK" or "500 Internal Server Error"
  client:write("Status: ", status, "\r\nContent-Type: text/plain\r\n\r\n", n, "\n")
end
