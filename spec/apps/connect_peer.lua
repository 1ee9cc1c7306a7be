-- spec/apps/connect_peer.lua: a scripted TCP peer for spec/connect_spec.lua, run as its own process
-- (the spec process is blocked while it waits for an SCGI answer):
--   lua5.4 spec/apps/connect_peer.lua PORT [SECONDS]
-- Listens on 127.0.0.1:PORT for at most SECONDS (default 60), serving any number of clients at
-- once. A client's first line is a command:
--   (nothing)   the peer stays silent and keeps the connection open
--   say X       sends X (no newline added, "\n" and "\r" escapes are decoded), stays open
--   close X     sends X, then closes the connection
--   echo        sends back every later byte; closes when the client shuts down its sending side
local socket = require "socket"

local port = assert(tonumber(arg[1]), "usage: connect_peer.lua PORT [SECONDS]")
local deadline = socket.gettime() + (tonumber(arg[2]) or 60)

local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(0)
io.stdout:write("peer listening on ", port, "\n")
io.stdout:flush()

local clients = {} -- socket -> { mode = "command" | "silent" | "echo", line = partial command }

local function unescape(s)
  return (s:gsub("\\n", "\n"):gsub("\\r", "\r"))
end

local function drop(c)
  clients[c] = nil
  c:close()
end

local function on_command(c, line)
  local cmd, rest = line:match("^(%S+)%s?(.*)$")
  if cmd == "say" then
    c:settimeout(5)
    c:send(unescape(rest))
    c:settimeout(0)
    clients[c].mode = "silent"
  elseif cmd == "close" then
    c:settimeout(5)
    c:send(unescape(rest))
    drop(c)
  elseif cmd == "echo" then
    clients[c].mode = "echo"
  else
    clients[c].mode = "silent"
  end
end

while socket.gettime() < deadline do
  local watch = { server }
  for c in pairs(clients) do watch[#watch + 1] = c end
  local ready = socket.select(watch, nil, 0.5)
  for _, s in ipairs(ready) do
    if s == server then
      local c = server:accept()
      if c then
        c:settimeout(0)
        clients[c] = { mode = "command", line = "" }
      end
    elseif clients[s] then
      local st = clients[s]
      local data, err, partial = s:receive(65536)
      data = data or partial
      if st.mode == "command" and data and #data > 0 then
        st.line = st.line .. data
        local line, after = st.line:match("^([^\n]*)\n(.*)$")
        if line then
          on_command(s, line)
          if clients[s] and st.mode == "echo" and #after > 0 then
            s:settimeout(5)
            s:send(after)
            s:settimeout(0)
          end
        end
      elseif st.mode == "echo" and data and #data > 0 then
        s:settimeout(5)
        s:send(data)
        s:settimeout(0)
      end
      if clients[s] and err == "closed" then drop(s) end
    end
  end
end
server:close()
