-- scgi: serve Lua handlers over SCGI; the Lua facade over scgi.core.
local core = require "scgi.core"
local request = require "scgi.request"
local multipart = require "scgi.multipart"
local response = require "scgi.response"
local wsapi = require "scgi.wsapi"

local scgi = { version = core.version, client_methods = core.client_methods }

-- scgi.sleep(seconds): parks the running request; other requests on the worker go on.
scgi.sleep = core.sleep
-- scgi.worker(): this worker's figures, named as in --stats (docs/api.md).
scgi.worker = core.worker
-- scgi.now(): a monotonic clock in seconds.
scgi.now = core.now
-- scgi.spawn(f, ...): f(...) as a task of the running request (it shares its budget and ends
-- with it); scgi.wait(task): true, its results... or false, its error; scgi.kill(task).
scgi.spawn = core.spawn
scgi.wait = core.wait
scgi.kill = core.kill
-- scgi.timer(delay, f, ...) and scgi.every(interval, f, ...): f(premature, ...) later, outside any
-- request, with the whole cooperative API; premature is true when the worker stops or reloads.
scgi.timer = core.timer
scgi.every = core.every
-- scgi.connect(host, port) or scgi.connect("/unix/path"): a cooperative socket with LuaSocket's
-- send, receive, settimeout, close, setoption and shutdown; waits park the request, not the worker.
scgi.connect = core.connect

-- Request helpers (scgi.request): URL encoding, query strings, forms, cookies, PATH_INFO.
scgi.url_decode = request.url_decode
scgi.url_encode = request.url_encode
scgi.parse_query = request.parse_query
scgi.parse_form = request.parse_form
scgi.read_form = request.read_form
scgi.parse_cookies = request.parse_cookies
scgi.path_info = request.path_info

-- scgi.multipart is the module scgi.multipart itself, callable: scgi.multipart(headers, client,
-- { on_part, on_data, on_part_end }, options) is scgi.multipart.parse, which streams a
-- multipart/form-data body through callbacks; scgi.multipart.reader (also
-- scgi.multipart_reader) is the pull API. No name shadows another.
scgi.multipart = multipart
scgi.multipart_reader = multipart.reader

-- client:redirect(url, status) and client:sse(headers) on every client (scgi.response).
response.install(core.client_methods)

-- scgi.wsapi is the module scgi.wsapi, callable: scgi.wsapi(app, options) is scgi.wsapi.new,
-- a handler that runs a WSAPI app.
scgi.wsapi = wsapi

-- scgi.shared.NAME: the dictionary declared with --shared NAME:SIZE (or the `shared` option),
-- shared by every worker: get, set, add, replace, incr, delete, keys, usage, flush_all.
scgi.shared = setmetatable({}, {
  __index = function(t, name)
    local dict = core.shared(name)
    if dict then rawset(t, name, dict) end
    return dict
  end,
})

-- Serves requests until SIGTERM or SIGINT. handler: a function (runs in this Lua state, one
-- worker) or the path of an app file that returns one (runs in a pool of worker states).
-- options: the program's options as snake_case keys, e.g. { socket = "/tmp/app.sock" }.
function scgi.handle_requests(handler, options)
  local kind = type(handler)
  if kind ~= "function" and kind ~= "string" then
    error("bad argument #1 to 'handle_requests' (function or path expected, got " .. kind .. ")", 2)
  end
  if options ~= nil and type(options) ~= "table" then
    error("bad argument #2 to 'handle_requests' (table expected, got " .. type(options) .. ")", 2)
  end
  local ok, err = core.serve(handler, options or {})
  if not ok then error("scgi-lua: " .. err, 2) end
  return true
end

return scgi
