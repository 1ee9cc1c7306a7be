-- bench/apps/loop.lua: the same work as a handler, in a plain lua5.4 loop, for the VM's own cost:
--   lua5.4 bench/apps/loop.lua page|sort ITERATIONS
-- prints "iterations=N cpu_s=S utime_ticks=U stime_ticks=T bytes=B": the process's CPU time over
-- the loop (os.clock), and its user and system clock ticks from /proc/self/stat.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local work = require(arg[1] or "page")
local n = tonumber(arg[2]) or 1000

local function ticks()
  local f = io.open("/proc/self/stat")
  if not f then return 0, 0 end
  local s = f:read("a")
  f:close()
  local fields = {}
  for v in s:gsub("^.*%) ", ""):gmatch("%S+") do fields[#fields + 1] = v end
  return tonumber(fields[12]), tonumber(fields[13]) -- utime, stime (fields 14, 15 of stat)
end

local bytes = #work.render() -- warm-up, as the server's first request
local u0, s0 = ticks()
local c0 = os.clock()
for _ = 1, n do bytes = #work.render() end
local c1 = os.clock()
local u1, s1 = ticks()
print(string.format("iterations=%d cpu_s=%.6f utime_ticks=%d stime_ticks=%d bytes=%d", n, c1 - c0,
                    u1 - u0, s1 - s0, bytes))
