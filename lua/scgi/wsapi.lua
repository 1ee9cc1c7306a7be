-- scgi.wsapi: runs a WSAPI application unchanged as a scgi-lua handler. The app gets a
-- wsapi_env (the CGI variables, input, error, APP_PATH, SCRIPT_NAME, PATH_INFO) and returns
-- status, headers, iterator; the handler calls the iterator and writes each chunk itself, so
-- every write happens in the request's own coroutine even when the iterator is a
-- coroutine.wrap (a write that has to wait could not yield from inside that).
local request = require "scgi.request"

local type, error, setmetatable, getmetatable, pairs, tostring, tonumber, select =
  type, error, setmetatable, getmetatable, pairs, tostring, tonumber, select
local format, match, mtype, tointeger = string.format, string.match, math.type, math.tointeger
local unpack, getinfo = table.unpack, debug.getinfo
local stderr = io.stderr

local M = {}

-- Raises "bad argument #n to 'fname' (msg)" at the caller of the function that calls this.
local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

local Input = {}
Input.__index = Input

-- wsapi_env.input:read(...): like file:read over the request body (n, "a", "l", "L", with or
-- without "*"; the default is "l"); nil at the end of the body.
function Input:read(...)
  local n = select("#", ...)
  if n <= 1 then return self.client:read((...) or "l") end
  local out = {}
  for i = 1, n do
    out[i] = self.client:read((select(i, ...)))
    if out[i] == nil then return unpack(out, 1, i) end
  end
  return unpack(out, 1, n)
end

local Error = {}
Error.__index = Error

-- wsapi_env.error:write(...): to the server's standard error (its log).
function Error.write(_, ...) return stderr:write(...) end

-- wsapi_env.error:flush().
function Error.flush() return stderr:flush() end

local the_error = setmetatable({}, Error)

-- "" for a CGI variable the request does not have, as WSAPI servers answer.
local function missing_var(_, key)
  if type(key) == "string" then return "" end
  return nil
end

local env_mt = { __index = missing_var }

-- The wsapi_env of a request: every SCGI header, input, error, APP_PATH, SCRIPT_NAME and
-- PATH_INFO (from scgi.path_info when the web server sent none).
local function make_env(headers, client, app_path)
  local env = {}
  for k, v in pairs(headers) do env[k] = v end
  local path_info, script_name = request.path_info(headers)
  env.PATH_INFO = path_info ~= "" and path_info or "/"
  env.SCRIPT_NAME = script_name
  env.APP_PATH = app_path
  env.input = setmetatable({ client = client, length = tonumber(headers.CONTENT_LENGTH) or 0 }, Input)
  env.error = the_error
  return setmetatable(env, env_mt)
end

-- The status for client:respond: an integer, or a string such as "404 Not Found" ("404" alone
-- becomes 404 so the reason phrase is added); raises for anything else.
local function status_of(status)
  if mtype(status) == "integer" then return status end
  if type(status) == "number" and tointeger(status) then return tointeger(status) end
  if type(status) == "string" then
    if match(status, "^%s*%d%d%d%s*$") then return tointeger(tonumber(status)) end
    return status
  end
  error("the WSAPI app returned a bad status (" .. tostring(status) .. ")", 3)
end

-- The app's headers without the entries client:respond cannot take; raises on bad ones.
local function headers_of(h)
  if h == nil then return {} end
  if type(h) ~= "table" then error("the WSAPI app returned headers that are not a table", 3) end
  local out = {}
  for name, value in pairs(h) do
    if type(name) ~= "string" then error("the WSAPI app returned a header name that is not a string", 3) end
    if type(value) == "boolean" then value = tostring(value) end
    out[name] = value
  end
  return out
end

-- Writes the body: an iterator (called here, in the request's coroutine, one chunk at a time),
-- a string or a list of strings. Returns false once the client went away.
local function write_body(client, body, flush)
  local kind = type(body)
  if body == nil then return true end
  if kind == "string" then return client:write(body) ~= nil end
  local mt = getmetatable(body)
  if kind == "table" and not (type(mt) == "table" and mt.__call) then
    for i = 1, #body do
      if not client:write(tostring(body[i])) then return false end
    end
    return true
  end
  while true do
    local chunk = body()
    if chunk == nil then return true end
    if not client:write(tostring(chunk)) then return false end
    if flush and not client:flush() then return false end
  end
end

-- The directory of the file that defines Lua function f ("" for C functions or loaded strings).
local function source_dir(f)
  local info = getinfo(f, "S")
  local file = info and match(info.source, "^@(.*)$")
  if not file then return "" end
  return match(file, "^(.*)/[^/]*$") or "."
end

-- A WSAPI app's run function: the function itself, or the run field of a module table.
local function run_of(app)
  if type(app) == "function" then return app end
  if type(app) == "table" and type(app.run) == "function" then return app.run end
  return nil
end

-- A scgi-lua handler that runs the WSAPI app (a function, or a table with a run function).
-- options: app_path (APP_PATH, default the directory of the app's source file), flush (flush
-- after every chunk of the body, for apps that stream; default false).
function M.new(app, options)
  local run = run_of(app)
  if not run then
    argerror(1, "wsapi", "WSAPI app (function or table with a run function) expected, got " .. type(app))
  end
  if options ~= nil and type(options) ~= "table" then
    argerror(2, "wsapi", "table expected, got " .. type(options))
  end
  options = options or {}
  local app_path = options.app_path or source_dir(run)
  local flush = options.flush and true or false
  return function(headers, client)
    local status, rheaders, body = run(make_env(headers, client, app_path))
    if not client:respond(status_of(status), headers_of(rheaders)) then return end
    write_body(client, body, flush)
  end
end

-- What scgi-lua --wsapi calls on the value an app file returned: a handler for it. app_file,
-- when given, sets APP_PATH to the file's directory.
function M.wrap_app(v, app_file)
  if run_of(v) == nil then
    argerror(1, "wrap_app", "WSAPI app (function or table with a run function) expected, got " .. type(v))
  end
  local options = {}
  if type(app_file) == "string" then options.app_path = match(app_file, "^(.*)/[^/]*$") or "." end
  return M.new(v, options)
end

-- The module is callable: scgi.wsapi(app, options) is scgi.wsapi.new(app, options).
setmetatable(M, { __call = function(_, ...) return M.new(...) end })

return M
