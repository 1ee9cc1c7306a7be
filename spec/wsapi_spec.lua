-- spec/wsapi_spec.lua: scgi.wsapi running a WSAPI application written here, unchanged (it knows
-- nothing of scgi-lua: a module table with run, coroutine.wrap iterators), through the real
-- server, over SCGI and through a real nginx.
local H = require "helper"
local socket = require "socket"

-- The WSAPI app: plain WSAPI 1.x, no scgi-lua in it.
local APP = [==[
local M = {}

local function wrap(list)
  return coroutine.wrap(function()
    for _, s in ipairs(list) do coroutine.yield(s) end
  end)
end

local routes = {}

routes["/hello"] = function()
  return 200, { ["Content-Type"] = "text/plain" }, wrap({ "Hello ", "from ", "WSAPI\n" })
end

routes["/env"] = function(env)
  local body = env.input:read("*a")
  env.error:write("WSAPI error stream: ", env.PATH_INFO, "\n")
  local lines = {}
  for _, k in ipairs({ "REQUEST_METHOD", "PATH_INFO", "SCRIPT_NAME", "APP_PATH", "QUERY_STRING",
    "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_X_CUSTOM", "HTTP_X_NOT_THERE", "SERVER_PROTOCOL" }) do
    lines[#lines + 1] = k .. "=[" .. tostring(env[k]) .. "]\n"
  end
  lines[#lines + 1] = "BODY=[" .. body .. "]\n"
  lines[#lines + 1] = "LENGTH=[" .. env.input.length .. "]\n"
  return 200, { ["Content-Type"] = "text/plain" }, wrap(lines)
end

-- Reads the body with input:read(n) and input:read("*l"), reporting each piece.
routes["/read"] = function(env)
  local out = { "line=[" .. tostring(env.input:read("*l")) .. "]\n" }
  while true do
    local piece = env.input:read(3)
    if not piece then break end
    out[#out + 1] = "piece=[" .. piece .. "]\n"
  end
  out[#out + 1] = "after=[" .. tostring(env.input:read(1)) .. "]\n"
  return 200, { ["Content-Type"] = "text/plain" }, wrap(out)
end

-- ?mb=N: N MiB in 256 KiB chunks yielded from a coroutine.wrap iterator.
routes["/big"] = function(env)
  local mb = tonumber(env.QUERY_STRING:match("mb=(%d+)")) or 1
  local chunk = ("0123456789abcdef"):rep(16384)
  return 200, { ["Content-Type"] = "application/octet-stream", ["Content-Length"] = mb * 1048576 },
    coroutine.wrap(function()
      for _ = 1, mb * 4 do coroutine.yield(chunk) end
    end)
end

routes["/status"] = function()
  return "404 Not Found", { ["Content-Type"] = "text/plain", ["Set-Cookie"] = { "a=1", "b=2" } }, wrap({ "nope\n" })
end

routes["/created"] = function()
  return "201", { ["Content-Type"] = "text/plain" }, wrap({ "made\n" })
end

routes["/error"] = function() error("the WSAPI app failed") end

routes["/iter-error"] = function()
  return 200, { ["Content-Type"] = "text/plain" }, coroutine.wrap(function()
    coroutine.yield("first\n")
    error("the iterator failed")
  end)
end

function M.run(wsapi_env)
  local route = routes[wsapi_env.PATH_INFO]
  if not route then
    return 404, { ["Content-Type"] = "text/plain" }, wrap({ "no route " .. wsapi_env.PATH_INFO .. "\n" })
  end
  return route(wsapi_env)
end

return M
]==]


-- The same app handed to scgi.wsapi as a plain function, with options.
local SERVER_FN = [==[
local scgi = require "scgi"
local app = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "wsapp.lua")
return scgi.wsapi(function(env) return app.run(env) end, { app_path = "/srv/app", flush = true })
]==]

describe("scgi.wsapi", function()
  local dir, srv, srv_fn, ng
  setup(function()
    dir = H.tmpdir()
    H.write_file(dir .. "/wsapp.lua", APP)
    H.write_file(dir .. "/server_fn.lua", SERVER_FN)
    -- the WSAPI app file as it is, run by the program's --wsapi flag
    srv = H.start(dir .. "/wsapp.lua", { workers = 1, args = { "--wsapi" } })
    srv_fn = H.start(dir .. "/server_fn.lua", { workers = 1 })
    ng = H.nginx(srv.addr)
  end)
  teardown(function()
    if ng then ng.stop() end
    if srv then assert.equal(0, srv.stop()) end
    if srv_fn then assert.equal(0, srv_fn.stop()) end
    H.cleanup()
  end)

  it("runs the app through nginx: status, headers and the iterator's chunks", function()
    local status, headers, body = H.http(ng.port, "GET", "/hello")
    assert.equal(200, status)
    assert.equal("text/plain", headers["content-type"])
    assert.equal("Hello from WSAPI\n", body)
  end)

  it("builds wsapi_env: CGI variables, PATH_INFO, SCRIPT_NAME, APP_PATH, input, error", function()
    local status, _, body = H.http(ng.port, "POST", "/env?x=1&y=%20", "the body",
      { ["Content-Type"] = "text/x-test", ["X-Custom"] = "yes" })
    assert.equal(200, status)
    assert.matches("REQUEST_METHOD=[POST]\n", body, 1, true)
    assert.matches("PATH_INFO=[/env]\n", body, 1, true)
    assert.matches("SCRIPT_NAME=[]\n", body, 1, true)
    assert.matches("APP_PATH=[" .. dir .. "]\n", body, 1, true)
    assert.matches("QUERY_STRING=[x=1&y=%20]\n", body, 1, true)
    assert.matches("CONTENT_TYPE=[text/x-test]\n", body, 1, true)
    assert.matches("CONTENT_LENGTH=[8]\n", body, 1, true)
    assert.matches("HTTP_X_CUSTOM=[yes]\n", body, 1, true)
    assert.matches("HTTP_X_NOT_THERE=[]\n", body, 1, true)
    assert.matches("SERVER_PROTOCOL=[HTTP/1.0]\n", body, 1, true)
    assert.matches("BODY=[the body]\n", body, 1, true)
    assert.matches("LENGTH=[8]\n", body, 1, true)
    H.wait_for(function() return srv.output():find("WSAPI error stream: /env", 1, true) end, 5,
      "the error stream's line in the server's log")
  end)

  it("reads the body with input:read(n) and input:read('*l')", function()
    local status, _, body = H.http(ng.port, "POST", "/read", "first line\nabcdefgh")
    assert.equal(200, status)
    assert.equal("line=[first line]\npiece=[abc]\npiece=[def]\npiece=[gh]\nafter=[nil]\n", body)
  end)

  it("passes string statuses and list header values", function()
    local status, headers, body = H.request(srv.addr, "GET", "/status")
    assert.equal(404, status)
    assert.equal("404 Not Found", headers.status)
    assert.equal("nope\n", body)
    local _, _, _, raw = H.request(srv.addr, "GET", "/status")
    assert.matches("\r\nSet%-Cookie: a=1\r\n", raw)
    assert.matches("\r\nSet%-Cookie: b=2\r\n", raw)
    status, headers = H.request(srv.addr, "GET", "/created")
    assert.equal(201, status)
    assert.equal("201 Created", headers.status)
  end)

  it("writes from the request's coroutine: a 16 MiB coroutine.wrap body to a slow reader", function()
    local s = assert(H.connect(srv.addr))
    local head, b = H.encode(H.nginx_headers("GET", "/big?mb=16"), "")
    s:send(head .. b)
    socket.sleep(0.3) -- the socket fills up: the writes have to wait
    local raw = s:receive("*a")
    s:close()
    local status, headers, body = H.parse(raw)
    assert.equal(200, status)
    assert.equal(tostring(16 * 1048576), headers["content-length"])
    assert.equal(16 * 1048576, #body)
    assert.equal(("0123456789abcdef"):rep(64), body:sub(1, 1024))
    assert.is_nil(srv.output():find("outside its request's coroutine", 1, true))
  end)

  it("streams the same 16 MiB through nginx", function()
    local status, _, body = H.http(ng.port, "GET", "/big?mb=16")
    assert.equal(200, status)
    assert.equal(16 * 1048576, #body)
  end)

  it("an app or iterator error is a 500 while nothing was sent; the server goes on", function()
    local status = H.http(ng.port, "GET", "/error")
    assert.equal(500, status)
    status = H.request(srv.addr, "GET", "/iter-error") -- "first" was still in the buffer
    assert.equal(500, status)
    H.wait_for(function() return srv.output():find("the iterator failed", 1, true) end, 5, "the logged error")
    assert.equal(200, (H.http(ng.port, "GET", "/hello")))
  end)

  it("scgi.wsapi takes a function and options (app_path, flush)", function()
    local status, _, body = H.request(srv_fn.addr, "GET", "/env")
    assert.equal(200, status)
    assert.matches("APP_PATH=[/srv/app]\n", body, 1, true)
    status, _, body = H.request(srv_fn.addr, "GET", "/hello")
    assert.equal("Hello from WSAPI\n", body)
    -- flush = true: "first" reached the socket before the iterator failed, so it is cut short
    status, _, body = H.request(srv_fn.addr, "GET", "/iter-error")
    assert.equal(200, status)
    assert.equal("first\n", body)
  end)
end)

describe("scgi.wsapi arguments", function()
  local wsapi = require "scgi.wsapi"

  it("raise bad argument for what is not a WSAPI app", function()
    assert.error_matches(function() wsapi.new(42) end, "bad argument #1 to 'wsapi'")
    assert.error_matches(function() wsapi.new({}) end, "bad argument #1 to 'wsapi'")
    assert.error_matches(function() wsapi.new(function() end, "x") end, "bad argument #2 to 'wsapi'")
    assert.error_matches(function() wsapi.wrap_app("app.lua") end, "bad argument #1 to 'wrap_app'")
    assert.equal("function", type(wsapi.wrap_app({ run = function() end })))
    assert.equal("function", type(wsapi.wrap_app(function() end, "/x/app.lua")))
  end)
end)
