-- bench/apps/sort.lua: the pure-Lua work of the benchmarks: table.sort of 2000 numbers with a
-- comparator written in Lua (about 25,000 calls of it), shared by the scgi-lua handler
-- (bench/apps/sort_app.lua) and the plain lua5.4 loop (bench/apps/loop.lua).
--   local sort = require "sort"; local s = sort.render()   -- "first last" of the sorted list
local M = {}

local N = 2000
local base = {}
do
  local seed = 4242
  for i = 1, N do
    seed = (seed * 16807) % 2147483647
    base[i] = seed % 1000000
  end
end

local function desc(a, b) return a > b end

function M.render()
  local t = {}
  for i = 1, N do t[i] = base[i] end
  table.sort(t, desc)
  return t[1] .. " " .. t[N] .. "\n"
end

return M
