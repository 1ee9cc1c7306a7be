-- spec/apps/router.lua: the route table dispatch the spec apps share (`local R = require "router"`:
-- an app's directory is first on its package.path), and their small answers.
local R = {}

-- The path of the request's URI, without the query string.
function R.path(headers) return (headers.REQUEST_URI or "/"):match("^[^?]*") end

-- The query string as a table of name -> value, the values as sent (not decoded).
function R.query(headers)
  local q = {}
  for k, v in (headers.QUERY_STRING or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return q
end

-- Writes a 200 answer: the CGI head with Content-Type ctype (default text/plain), then body.
function R.ok(client, body, ctype)
  client:write("Status: 200 OK\r\nContent-Type: ", ctype or "text/plain", "\r\n\r\n", body)
end

-- Runs f under pcall and adds "name=ok" or "name=<the error>" to the list out (for the routes
-- that report each misuse of an API as a line).
function R.try(out, name, f)
  local ok, err = pcall(f)
  out[#out + 1] = name .. "=" .. (ok and "ok" or tostring(err))
end

-- The default answer for a path without a route: 404 "no route PATH".
function R.no_route(_, client, path)
  return client:respond(404, { ["Content-Type"] = "text/plain" }, "no route " .. path)
end

-- The handler of an app: routes[path](headers, client) for the request's path, or
-- otherwise(headers, client, path) (default R.no_route) when no route has that path.
function R.handler(routes, otherwise)
  otherwise = otherwise or R.no_route
  return function(headers, client)
    local path = R.path(headers)
    local route = routes[path]
    if route then return route(headers, client) end
    return otherwise(headers, client, path)
  end
end

return R
