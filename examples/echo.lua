-- echo.lua: answers with the request body (POST some data to it).
return function(headers, client)
  local body = client:read("a")
  client:respond(200, { ["Content-Type"] = headers.CONTENT_TYPE ~= "" and headers.CONTENT_TYPE or "text/plain" }, body)
end
