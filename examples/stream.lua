-- stream.lua: a streamed response; each line is flushed to the web server as it is written.
-- Behind nginx, set `scgi_buffering off;` to see the lines arrive one by one.
return function(headers, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
  for i = 1, 10 do
    local ok, err = client:write(("line %d of 10 for %s\n"):format(i, headers.REQUEST_URI))
    if not ok then return end -- the client went away ("closed")
    client:flush()
  end
end
