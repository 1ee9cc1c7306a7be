-- upload.lua: file uploads, streamed. GET shows a form; POST reads the multipart/form-data body
-- part by part with scgi.multipart_reader: text fields are read whole (up to 64 KiB), files are
-- written chunk by chunk to UPLOAD_DIR (default /tmp/scgi-uploads), so a file of any size
-- costs the worker no more than one 64 KiB chunk. (io.open/write block the worker while they
-- run; that is fine for a local disk.) Start scgi-lua with a --max-body-size that fits.
--   mkdir -p /tmp/scgi-uploads; APP=examples/upload.lua make run
local scgi = require "scgi"

local dir = os.getenv("UPLOAD_DIR") or "/tmp/scgi-uploads"

local page = [[
<!doctype html>
<meta charset="utf-8">
<title>scgi-lua upload</title>
<form method="post" enctype="multipart/form-data">
  <p><label>Comment <input name="comment"></label>
  <p><input type="file" name="files" multiple>
  <p><button>Upload</button>
</form>
]]

-- A safe file name from what the browser sent: the last path element, with anything but
-- letters, digits, ".", "_" and "-" replaced by "_", and no leading dot.
local function safe_name(filename)
  local base = filename:match("([^/\\]*)$"):gsub("[^%w._-]", "_"):gsub("^%.+", "")
  return base ~= "" and base or "upload"
end

-- Streams the current part into path; its size, or nil and a message.
local function save(reader, path)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local size = 0
  while true do
    local chunk
    chunk, err = reader:read()
    if not chunk then break end
    f:write(chunk)
    size = size + #chunk
  end
  f:close()
  if err then
    os.remove(path)
    return nil, err
  end
  return size
end

-- Reads every part: text fields into lines, files into dir; the lines, or nil and a message.
local function receive(headers, client)
  local reader, err = scgi.multipart_reader(headers, client)
  if not reader then return nil, err end
  local lines = {}
  while true do
    local part
    part, err = reader:next_part()
    if not part then
      if err then return nil, err end
      return lines
    end
    if part.filename and part.filename ~= "" then
      local name = safe_name(part.filename)
      local size
      size, err = save(reader, dir .. "/" .. name)
      if not size then return nil, err end
      lines[#lines + 1] = ("%s: %d bytes (%s)"):format(name, size, part.content_type)
    elseif part.name then
      local value
      value, err = reader:read_all(64 * 1024)
      if not value then return nil, err end
      lines[#lines + 1] = part.name .. ": " .. value
    end
  end
end

return function(headers, client)
  if headers.REQUEST_METHOD ~= "POST" then
    return client:respond(200, { ["Content-Type"] = "text/html; charset=utf-8" }, page)
  end
  local lines, err = receive(headers, client)
  if not lines then
    return client:respond(400, { ["Content-Type"] = "text/plain" }, "upload failed: " .. err .. "\n")
  end
  lines[#lines + 1] = ""
  client:respond(200, { ["Content-Type"] = "text/plain; charset=utf-8" }, table.concat(lines, "\n"))
end
