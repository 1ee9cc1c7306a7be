-- bench/apps/alloc.lua: allocates about 1 MiB of short-lived Lua data per request (for the GC figures).
return function(headers, client)
  local t = {}
  for i = 1, 1024 do t[i] = string.rep("x", 1000) .. i end
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", #t, "\n")
end
