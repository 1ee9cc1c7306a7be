-- spec/apps/test.lua: one app with a route per behaviour the specs exercise.
local R = require "router"
local ok, query = R.ok, R.query

local routes = {}

routes["/hello"] = function(_, client) ok(client, "Hello world\n") end

-- The headers table, serialised so the spec can load it back and compare byte for byte.
routes["/headers"] = function(headers, client)
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  local out = { "return {" }
  for _, k in ipairs(names) do
    assert(type(headers[k]) == "string", "header value is not a string")
    out[#out + 1] = ("[%q]=%q,"):format(k, headers[k])
  end
  out[#out + 1] = "}"
  ok(client, table.concat(out, "\n"))
end

routes["/echo"] = function(headers, client)
  local body = client:read("a")
  ok(client, body, headers.CONTENT_TYPE)
end

-- Reads the body with the format given in ?fmt= and answers the pieces as "len:piece," items.
routes["/read"] = function(headers, client)
  local q = query(headers)
  local fmt = tonumber(q.fmt) or q.fmt
  local out = {}
  while true do
    local piece = client:read(fmt)
    if piece == nil or (fmt == "a" and #out > 0) then break end
    out[#out + 1] = #piece .. ":" .. piece .. ","
    if fmt == "a" then break end
  end
  ok(client, table.concat(out))
end

routes["/noread"] = function(_, client) ok(client, "did not read\n") end

routes["/error"] = function() error("boom from the handler") end

routes["/error-after-write"] = function(_, client)
  client:write("Status: 200 OK\r\n\r\npartial")
  error("boom after writing")
end

routes["/error-table"] = function() error({ code = 1 }) end

routes["/nothing"] = function() end

-- ?mb=N: N MiB in 64 KiB writes.
routes["/stream"] = function(headers, client)
  local mb = tonumber(query(headers).mb) or 1
  client:write("Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
  local chunk = string.rep("x", 65536)
  for _ = 1, mb * 16 do
    local r, err = client:write(chunk)
    if not r then return err end
  end
end

routes["/big-string"] = function(headers, client)
  local mb = tonumber(query(headers).mb) or 8
  client:write("Status: 200 OK\r\n\r\n", string.rep("y", mb * 1048576))
end

routes["/respond"] = function(headers, client)
  local q = query(headers)
  if q.kind == "list" then
    client:respond(201, { ["X-A"] = { "1", "2" }, ["Content-Type"] = "text/plain" }, { "a", "b", "c" })
  elseif q.kind == "iter" then
    local i = 0
    client:respond("202 Accepted", { ["Content-Type"] = "text/plain" }, function()
      i = i + 1
      if i <= 3 then return "chunk" .. i end
    end)
  else
    client:respond(404, { ["Content-Type"] = "text/plain" }, "not here")
  end
end

-- Errors for each misuse, caught and reported as lines.
routes["/misuse"] = function(_, client)
  local out = {}
  R.try(out, "write-table", function() client:write({}) end)
  R.try(out, "read-bad", function() client:read("x") end)
  R.try(out, "read-neg", function() client:read(-1) end)
  R.try(out, "respond-bad", function() client:respond({}) end)
  out[#out + 1] = "tostring=" .. tostring(client)
  ok(client, table.concat(out, "\n"))
end

local kept
routes["/keep"] = function(_, client)
  kept = client
  ok(client, "kept")
end

routes["/use-kept"] = function(_, client)
  local okk, err = pcall(function() kept:write("x") end)
  ok(client, tostring(okk) .. " " .. tostring(err) .. " " .. tostring(kept))
end

routes["/close-early"] = function(_, client)
  client:write("Status: 200 OK\r\n\r\nclosed early")
  client:close()
  local okk, err = pcall(function() client:write("more") end)
  assert(not okk and err:find("closed scgi client"), "write after close did not raise")
end

routes["/tbc"] = function(_, client)
  local c <close> = client
  c:write("Status: 200 OK\r\n\r\nto-be-closed")
end

routes["/flush"] = function(_, client)
  client:write("Status: 200 OK\r\n\r\n")
  assert(client:flush() == client)
  client:write("flushed")
end

-- ?s=S&sleep=T: sets the request's budget to S seconds, then sleeps T seconds and answers.
routes["/budget"] = function(headers, client)
  local q = query(headers)
  client:budget(tonumber(q.s))
  require("scgi").sleep(tonumber(q.sleep))
  ok(client, "slept")
end

return R.handler(routes)
