-- spec/structure_spec.lua: the rules of the code's shape that a reader can check, checked here:
-- no core C file both sees Lua's headers (directly or through another header) and makes socket
-- system calls; no core .c file over 600 lines, no header over 150; docs/design.md's layer table
-- names every core file; README.md and docs/api.md list every option --help lists.
local H = require "helper"

local core = H.root .. "/core"

local function core_files(ext)
  local out = {}
  for name in H.sh_out("ls " .. H.quote(core)):gmatch("[^\n]+") do
    if name:sub(-#ext - 1) == "." .. ext then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

-- The source without comments, string and character literals (their text is not code).
local function code_of(src)
  local out, i, n = {}, 1, #src
  while i <= n do
    local c, d = src:sub(i, i), src:sub(i, i + 1)
    if d == "/*" then
      local j = src:find("*/", i + 2, true) or n
      out[#out + 1] = " "
      i = j + 2
    elseif d == "//" then
      i = (src:find("\n", i, true) or n + 1)
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and src:sub(j, j) ~= c do j = j + (src:sub(j, j) == "\\" and 2 or 1) end
      out[#out + 1] = c .. c
      i = j + 1
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

local lua_headers = { ["lua.h"] = true, ["lauxlib.h"] = true, ["lualib.h"] = true }

-- Whether a core file includes a Lua header, directly or through core headers it includes.
local function sees_lua(name, seen)
  seen = seen or {}
  if seen[name] then return false end
  seen[name] = true
  local src = H.read_file(core .. "/" .. name) or error("cannot read core/" .. name)
  for inc in src:gmatch('#include%s*[<"]([^>"]+)[>"]') do
    if lua_headers[inc] then return true end
    if H.exists(core .. "/" .. inc) and sees_lua(inc, seen) then return true end
  end
  return false
end

local syscalls = { "recv", "recvfrom", "recvmsg", "send", "sendto", "sendmsg", "read", "write",
  "readv", "writev", "accept", "accept4", "connect", "shutdown" }

-- The socket system calls a file makes (calls of the plain names, not members or other names).
local function calls_of(name)
  local code = code_of(H.read_file(core .. "/" .. name))
  local found = {}
  for _, f in ipairs(syscalls) do
    for before in code:gmatch("(.)" .. f .. "%s*%(") do
      if not before:match("[%w_%.>]") then
        found[#found + 1] = f
        break
      end
    end
  end
  return found
end

local function line_count(name)
  return select(2, (H.read_file(core .. "/" .. name)):gsub("\n", "\n"))
end

describe("the code's shape", function()
  it("the rule checker sees what it should: Lua through a header, calls but not comments", function()
    assert.is_true(sees_lua("lclient.c"))
    assert.is_false(sees_lua("conn.c"))
    assert.same({ "recv", "send", "shutdown" }, calls_of("refuse.c"))
    assert.same({}, calls_of("lsocket.c"))
  end)

  it("no core C file both includes Lua's headers and makes socket system calls", function()
    local bad = {}
    for _, f in ipairs(core_files("c")) do
      local calls = calls_of(f)
      if #calls > 0 and sees_lua(f) then bad[#bad + 1] = f .. " (" .. table.concat(calls, ", ") .. ")" end
    end
    assert.same({}, bad)
  end)

  it("no core .c file is over 600 lines, no header over 150", function()
    local bad = {}
    for _, f in ipairs(core_files("c")) do
      if line_count(f) > 600 then bad[#bad + 1] = f .. ": " .. line_count(f) end
    end
    for _, f in ipairs(core_files("h")) do
      if line_count(f) > 150 then bad[#bad + 1] = f .. ": " .. line_count(f) end
    end
    assert.same({}, bad)
  end)

  it("docs/design.md's layer table names every core file", function()
    local design = H.read_file(H.root .. "/docs/design.md")
    local missing = {}
    for _, ext in ipairs({ "c", "h", "lua" }) do
      for _, f in ipairs(core_files(ext)) do
        if not design:find("`" .. f .. "`", 1, true) then missing[#missing + 1] = f end
      end
    end
    assert.same({}, missing)
  end)

  -- Every --name that --help lists, in the order it lists them.
  local function help_options()
    local out = {}
    for name in H.sh_out(H.quote(H.program) .. " --help"):gmatch("\n  (%-%-[%w%-]+)") do
      out[#out + 1] = name
    end
    return out
  end

  for _, doc in ipairs({ "README.md", "docs/api.md" }) do
    it(doc .. " has a table row for every option --help lists", function()
      local opts = help_options()
      assert.is_true(#opts > 30, #opts .. " options in --help")
      local rows = {}
      for line in (H.read_file(H.root .. "/" .. doc) or ""):gmatch("[^\n]+") do
        if line:match("^|") then
          for name in line:gmatch("`(%-%-[%w%-]+)") do rows[name] = true end
        end
      end
      local missing = {}
      for _, o in ipairs(opts) do
        if not rows[o] then missing[#missing + 1] = o end
      end
      assert.same({}, missing)
    end)
  end
end)
