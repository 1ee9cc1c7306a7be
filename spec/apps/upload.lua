-- spec/apps/upload.lua: multipart uploads for spec/multipart_spec.lua. Each part is streamed
-- through a checksum (spec/apps/checksum.lua), never kept whole; the answer has one line per
-- part: "part NAME|FILENAME|CONTENT_TYPE|SIZE|CHECKSUM", then "parts N" and the Lua memory.
local scgi = require "scgi"
local R = require "router"
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local checksum = dofile(dir .. "checksum.lua")

-- One line describing a finished part.
local function part_line(part, size, sum)
  return ("part %s|%s|%s|%d|%s\n"):format(part.name or "-", part.filename or "-",
    part.content_type, size, sum)
end

-- The largest Lua heap seen (KiB), sampled every 16 chunks by the callback API.
local lua_peak, chunks = 0, 0

-- The callback API: on_part, on_data, on_part_end; the part count, nil and a message, the lines.
local function with_callbacks(headers, client)
  local out, st, size = {}, nil, 0
  local n, err = scgi.multipart(headers, client, {
    on_part = function() st, size = checksum.new(), 0 end,
    on_data = function(chunk)
      size = size + #chunk
      checksum.update(st, chunk)
      chunks = chunks + 1
      if chunks % 16 == 0 then lua_peak = math.max(lua_peak, collectgarbage("count")) end
    end,
    on_part_end = function(part) out[#out + 1] = part_line(part, size, checksum.final(st)) end,
  })
  return n, err, out
end

-- The pull API: multipart_reader, next_part, read; text fields with read_all.
local function with_reader(headers, client)
  local reader, err = scgi.multipart_reader(headers, client, { chunk_size = 8192 })
  if not reader then return nil, err end
  local out, n = {}, 0
  while true do
    local part
    part, err = reader:next_part()
    if not part then
      if err then return nil, err end
      return n, nil, out
    end
    n = n + 1
    if part.filename then
      local st, size = checksum.new(), 0
      while true do
        local chunk
        chunk, err = reader:read()
        if not chunk then break end
        size = size + #chunk
        checksum.update(st, chunk)
      end
      if err then return nil, err end
      out[#out + 1] = part_line(part, size, checksum.final(st))
    else
      local value
      value, err = reader:read_all(1024)
      if not value then return nil, err end
      out[#out + 1] = part_line(part, #value, "value=" .. value)
    end
  end
end

-- Answers the lines of the parts read by run (with_callbacks or with_reader), or 400 and the
-- message.
local function answer(run, headers, client)
  local t0 = scgi.now()
  lua_peak, chunks = collectgarbage("count"), 0
  local n, err, out = run(headers, client)
  if not n then
    return client:respond(400, { ["Content-Type"] = "text/plain" }, "error: " .. err .. "\n")
  end
  collectgarbage()
  out[#out + 1] = ("parts %d\nlua_memory %d\nlua_peak %d\nseconds %.3f\n"):format(n,
    collectgarbage("count") * 1024, lua_peak * 1024, scgi.now() - t0)
  client:respond(200, { ["Content-Type"] = "text/plain" }, table.concat(out))
end

return R.handler({
  ["/upload"] = function(headers, client) return answer(with_callbacks, headers, client) end,
  ["/upload-pull"] = function(headers, client) return answer(with_reader, headers, client) end,
}, function(_, client) return client:respond(404, { ["Content-Type"] = "text/plain" }, "no route\n") end)
