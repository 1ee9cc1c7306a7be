-- hello.lua: the smallest app: every request gets "Hello world".
return function(headers, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello world\n")
end
