-- https_client.lua: HTTPS from a handler, two ways: LuaSec's ssl.https (unchanged: inside a
-- request its socket is cooperative and ssl.wrap gives scgi-lua's TLS), and sock:sslhandshake on a
-- socket of one's own. Both park the request, not the worker, for the connect, the handshake and
-- every read and write.
-- Run: sh examples/services.sh examples/https_client.lua --workers 1   (it adds --ca-file)
--   curl 'http://127.0.0.1:8080/?delay=1'           ssl.https.request, the peer verified
--   curl 'http://127.0.0.1:8080/handshake?delay=1'  sslhandshake, then HTTP/1.0 by hand
local https = require "ssl.https"
local ltn12 = require "ltn12"
local socket = require "socket"
local scgi = require "scgi"

local upstream = os.getenv("HTTPS_URL") or "https://127.0.0.1:8443"

local function text(client, status, s)
  client:respond(status, { ["Content-Type"] = "text/plain" }, s)
end

-- LuaSec's client. Its own default is verify = "none": ask for "peer". Without a cafile, the
-- certificates trusted are --ca-file's, or the system's.
local function with_luasec(delay)
  local parts = {}
  local ok, code, hs = https.request({
    url = upstream .. "/quote?delay=" .. delay,
    verify = "peer",
    sink = ltn12.sink.table(parts),
  })
  if not ok then return nil, code end -- code is the error: "handshake failed: certificate verify failed: ..."
  return ("%d %s"):format(code, table.concat(parts))
end

-- A cooperative socket of one's own: connect, sslhandshake(session, server name, verify), and a
-- request written by hand. sslhandshake verifies the chain and the name unless told false.
local function with_handshake(delay)
  local host, port = upstream:match("^https://([^:/]+):?(%d*)")
  local sock = socket.tcp()
  sock:settimeout(5)
  local ok, err = sock:connect(host, tonumber(port) or 443)
  if not ok then return nil, "connect: " .. err end
  ok, err = sock:sslhandshake(nil, host)
  if not ok then
    sock:close()
    return nil, err -- "handshake failed: certificate verify failed: self-signed certificate"
  end
  sock:send(("GET /raw?delay=%s HTTP/1.0\r\nHost: %s\r\n\r\n"):format(delay, host))
  local answer, rerr = sock:receive("*a") -- HTTP/1.0: the peer closes at the end
  sock:close()
  if not answer then return nil, rerr end
  return answer:match("^HTTP/1%.%d (%d+)") .. " " .. answer:match("\r\n\r\n(.*)$")
end

return function(headers, client)
  local delay = tonumber(scgi.parse_query(headers.QUERY_STRING).delay) or 0
  local call = scgi.path_info(headers) == "/handshake" and with_handshake or with_luasec
  local t0 = scgi.now()
  local answer, err = call(delay)
  if not answer then return text(client, 502, "upstream: " .. tostring(err) .. "\n") end
  text(client, 200, ("%.3f s: %s"):format(scgi.now() - t0, answer))
end
