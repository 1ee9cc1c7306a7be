-- examples/pg.lua: a small pure-Lua PostgreSQL client: protocol 3.0, TRUST AUTHENTICATION ONLY
-- (no password, md5 or SCRAM: the server must let the user in without one), the simple query
-- protocol, rows as tables of strings keyed by column name (NULL: absent), errors as nil, message.
-- It talks over require("socket").tcp(), so inside scgi-lua (a handler, a task, a timer) every
-- wait parks the request and the worker serves others; elsewhere it is plain blocking LuaSocket.
--
--   local pg = require "pg"  -- with examples/ on package.path
--   local db = assert(pg.connect({ host = "127.0.0.1", port = 5432, user = "app", database = "app" }))
--   local rows, err = db:query("SELECT id, name FROM users ORDER BY id")
--   for _, row in ipairs(rows) do print(row.id, row.name) end   -- strings
--   db:close()            -- or, inside scgi-lua, db:keepalive() to pool the connection
local socket = require "socket"

local pg = {}

local Conn = {}
Conn.__index = Conn

-- One message from the server: its type letter and body, or nil and the socket's error.
local function read_message(sock)
  local head, err = sock:receive(5)
  if not head then return nil, err end
  local kind, len = string.unpack(">c1i4", head)
  if len <= 4 then return kind, "" end
  local body
  body, err = sock:receive(len - 4)
  if not body then return nil, err end
  return kind, body
end

-- The message of an ErrorResponse body: "SEVERITY: text", and its SQLSTATE code.
local function error_text(body)
  local fields = {}
  for code, value in body:gmatch("([^\0])([^\0]*)\0") do fields[code] = value end
  return ("%s: %s"):format(fields.S or "ERROR", fields.M or "unknown error"), fields.C
end

-- Sends a message of type kind (nil: the startup message, which has none) with body.
local function send_message(sock, kind, body)
  return sock:send((kind or "") .. string.pack(">i4", #body + 4) .. body)
end

-- Reads until ReadyForQuery after the startup message: true, or nil and why.
local function startup(self, user, database)
  local body = string.pack(">i4", 196608) .. string.pack("zzzz", "user", user, "database", database) .. "\0"
  local ok, err = send_message(self.sock, nil, body)
  if not ok then return nil, err end
  while true do
    local kind, msg = read_message(self.sock)
    if not kind then return nil, msg end
    if kind == "R" then
      local code = string.unpack(">i4", msg)
      if code ~= 0 then
        return nil, ("the server asks for authentication (method %d): pg.lua speaks trust only"):format(code)
      end
    elseif kind == "S" then
      local name, value = string.unpack("zz", msg)
      self.parameters[name] = value
    elseif kind == "E" then
      return nil, error_text(msg)
    elseif kind == "Z" then
      return true
    end -- K (the key to cancel with) and N (notices) are not needed here
  end
end

-- pg.connect{ host, port, user, database, timeout, path }: a connection, or nil and why. path is
-- a unix socket (".../.s.PGSQL.5432") instead of host and port.
function pg.connect(opts)
  opts = opts or {}
  local sock = opts.path and require("socket.unix")() or socket.tcp()
  sock:settimeout(opts.timeout or 10)
  local ok, err
  if opts.path then
    ok, err = sock:connect(opts.path)
  else
    local user, database = opts.user or "postgres", opts.database or opts.user or "postgres"
    local key = ("pg:%s@%s:%d/%s"):format(user, opts.host or "127.0.0.1", opts.port or 5432, database)
    ok, err = sock:connect(opts.host or "127.0.0.1", opts.port or 5432, { pool = key })
  end
  if not ok then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  local self = setmetatable({ sock = sock, parameters = {} }, Conn)
  -- a connection from scgi-lua's pool is logged in already, and ready for a query
  if sock.getreusedtimes and sock:getreusedtimes() > 0 then return self end
  ok, err = startup(self, opts.user or "postgres", opts.database or opts.user or "postgres")
  if not ok then
    sock:close()
    return nil, err
  end
  return self
end

-- The values of a DataRow body as a table keyed by the columns' names.
local function data_row(body, columns)
  local row, pos = {}, 3
  for i = 1, string.unpack(">i2", body) do
    local len
    len, pos = string.unpack(">i4", body, pos)
    if len >= 0 then
      row[columns[i]] = body:sub(pos, pos + len - 1)
      pos = pos + len
    end
  end
  return row
end

-- The names of the columns in a RowDescription body.
local function row_description(body)
  local columns, pos = {}, 3
  for i = 1, string.unpack(">i2", body) do
    columns[i], pos = string.unpack("z", body, pos)
    pos = pos + 18 -- table oid, column number, type oid, size, modifier, format
  end
  return columns
end

-- db:query(sql): the rows of the last statement (a list of tables of strings; rows.columns, the
-- names in order; rows.tag, the command tag such as "SELECT 3"), or nil, "ERROR: message", SQLSTATE.
-- The connection stays usable after an error.
function Conn:query(sql)
  local ok, err = send_message(self.sock, "Q", sql .. "\0")
  if not ok then return nil, err end
  local rows, columns, failure, code = { columns = {} }, {}, nil, nil
  while true do
    local kind, body = read_message(self.sock)
    if not kind then return nil, body end
    if kind == "T" then
      columns = row_description(body)
      rows = { columns = columns }
    elseif kind == "D" then
      rows[#rows + 1] = data_row(body, columns)
    elseif kind == "C" then
      rows.tag = string.unpack("z", body)
    elseif kind == "E" then
      failure, code = error_text(body)
    elseif kind == "Z" then
      if failure then return nil, failure, code end
      return rows
    end -- I (an empty query), N (notices), S (parameters) carry nothing to return
  end
end

-- db:close(): says goodbye to the server and closes the socket.
function Conn:close()
  send_message(self.sock, "X", "")
  return self.sock:close()
end

-- db:keepalive([max_idle [, size]]): inside scgi-lua, hands the connection to the worker's pool
-- (the next pg.connect with the same user, host, port and database takes it); elsewhere closes it.
function Conn:keepalive(...)
  if self.sock.setkeepalive then return self.sock:setkeepalive(...) end
  return self:close()
end

return pg
