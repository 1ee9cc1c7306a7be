-- error.lua: a handler that raises. scgi-lua logs the message and traceback with the request's
-- method and URI, answers "Status: 500 Internal Server Error", and goes on serving.
return function(headers, client)
  if headers.QUERY_STRING == "ok" then
    return client:respond(200, { ["Content-Type"] = "text/plain" }, "fine\n")
  end
  error("something went wrong while handling " .. headers.REQUEST_URI)
end
