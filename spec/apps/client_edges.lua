-- spec/apps/client_edges.lua: routes for the client object's edge cases (flush, close, <close>,
-- closed(), respond's checks, a read where the handler cannot yield, child processes) and for
-- handler errors around output; every other path goes to test.lua's handler (loaded from the same
-- directory), so its routes work here too.
local R = require "router"
local ok = R.ok
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local base = dofile(dir .. "test.lua")

local routes = {}

-- Leaves a line on stderr so a spec can tell whether the handler ran at all.
routes["/mark"] = function(headers, client)
  io.stderr:write("MARK handler ran for ", headers.REQUEST_URI or "-", "\n")
  io.stderr:flush()
  ok(client, "marked")
end

-- Part of the response reaches the socket (flush), then the handler raises.
routes["/error-after-flush"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial")
  assert(client:flush() == client)
  error("boom after flushing")
end

-- Sends its first bytes with flush, then waits for the body: the spec reads "first;" before it
-- sends the body, which only works if flush really sent them.
routes["/flush-then-read"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst;")
  client:flush()
  local body = client:read("a")
  client:write("got:", body)
end

-- A <close> variable in a block: once the block ends the client is closed although the handler
-- goes on; what it sees afterwards goes to stderr.
routes["/tbc-block"] = function(_, client)
  do
    local c <close> = client
    c:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\ntbc-block")
  end
  local okk, err = pcall(function() client:write("late") end)
  io.stderr:write("TBC after block: closed=", tostring(client:closed()), " write=", tostring(okk),
    " err=", tostring(err), " str=", tostring(client), "\n")
  io.stderr:flush()
end

-- Yields with coroutine.yield instead of waiting in a client call.
routes["/yield"] = function() coroutine.yield("no") end

-- 1 MiB of "y" after the head, then an error: the response is cut short.
routes["/big-then-error"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", string.rep("y", 1048576))
  error("boom after a large write")
end

-- respond() with header names or values that would break the CGI head: each must raise.
routes["/respond-bad-header"] = function(_, client)
  local out = {}
  R.try(out, "name-crlf", function() client:respond(200, { ["X-Bad\r\nInjected"] = "1" }, "") end)
  R.try(out, "name-colon", function() client:respond(200, { ["X:Y"] = "1" }, "") end)
  R.try(out, "name-empty", function() client:respond(200, { [""] = "1" }, "") end)
  R.try(out, "value-lf", function() client:respond(200, { ["X-Ok"] = "a\nInjected: 1" }, "") end)
  R.try(out, "status-crlf", function() client:respond("200 OK\r\nInjected: 1", {}, "") end)
  R.try(out, "status-range", function() client:respond(99, {}, "") end)
  R.try(out, "status-float", function() client:respond(200.5, {}, "") end)
  R.try(out, "status-huge", function() client:respond(1e300, {}, "") end)
  R.try(out, "status-letters", function() client:respond("abc", {}, "") end)
  R.try(out, "status-short", function() client:respond("20 OK", {}, "") end)
  R.try(out, "status-long", function() client:respond("2000", {}, "") end)
  R.try(out, "body-bad", function() client:respond(200, {}, true) end)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n", table.concat(out, "\n"))
end

-- An integral float status is taken as its integer.
routes["/respond-float"] = function(_, client)
  client:respond(201.0, { ["Content-Type"] = "text/plain" }, "float")
end

-- Numbers written with write() and a nil status in respond().
routes["/respond-default"] = function(_, client)
  client:respond(nil, { ["X-N"] = 42 }, { "n=", "1" })
end

-- Runs child processes the usual Lua ways and reports what their exit statuses came back as.
routes["/spawn"] = function(headers, client)
  local n = tonumber((headers.QUERY_STRING or ""):match("n=(%d+)")) or 20
  local bad = {}
  for i = 1, n do
    local ok, how, code = os.execute("exit 3")
    if not (ok == nil and how == "exit" and code == 3) then
      bad[#bad + 1] = ("execute #%d: %s %s %s"):format(i, tostring(ok), tostring(how), tostring(code))
    end
    local f = io.popen("echo hi")
    local out = f:read("a")
    local cok, chow, ccode = f:close()
    if not (out == "hi\n" and cok == true and chow == "exit" and ccode == 0) then
      bad[#bad + 1] = ("popen #%d: %q %s %s %s"):format(i, out, tostring(cok), tostring(chow), tostring(ccode))
    end
  end
  ok(client, #bad == 0 and "all " .. n .. " good" or table.concat(bad, "\n"))
end

-- Asks client:closed() in the middle of a response, then goes on writing.
routes["/closed-check"] = function(_, client)
  client:write("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
  local before = client:closed()
  local okw, err = client:write("closed()=", tostring(before), ";")
  client:write("after")
  io.stderr:write("CLOSED-CHECK closed=", tostring(before), " write=", tostring(okw), " ", tostring(err), "\n")
end

-- Closes the client without having written anything.
routes["/close-nothing"] = function(_, client) client:close() end

-- Keeps the worker busy (no yielding) for ?ms= milliseconds, then answers.
routes["/spin"] = function(headers, client)
  local ms = tonumber((headers.QUERY_STRING or ""):match("ms=(%d+)")) or 100
  local t = os.clock()
  while os.clock() - t < ms / 1000 do end
  ok(client, "spun")
end

-- Calls client:read where the coroutine cannot yield (inside a string.gsub callback), catches
-- the error, then reads the body properly and answers both.
routes["/read-in-gsub"] = function(_, client)
  local okk, err = pcall(string.gsub, "x", "x", function() return client:read("a") end)
  local body = client:read("a")
  ok(client, "pcall=" .. tostring(okk) .. " err=" .. tostring(err) .. " body=" .. tostring(body))
end

return R.handler(routes, base)
