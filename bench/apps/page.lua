-- bench/apps/page.lua: the Lua-heavy page of the benchmarks, a ~13 KB HTML table of orders
-- rendered with string.format, gsub and table.concat. One renderer for every runner: the
-- scgi-lua handler (bench/apps/page_app.lua), the plain lua5.4 loop (bench/apps/page_loop.lua),
-- nginx's content_by_lua_block (LuaJIT) and uWSGI's Lua plugin (bench/uwsgi/page.lua), so it
-- keeps to what Lua 5.1 to 5.4 and LuaJIT share (no integer division, no goto, no attributes).
--
--   local page = require "page"      -- with this directory in package.path
--   local html = page.render()       -- the same 13 KB string every call
local M = {}

local format, gsub, concat, floor = string.format, string.gsub, table.concat, math.floor

-- The data a handler would get from a database, built once when the module loads.
local ROWS = 90
local names = { "Ada & Co", "Bell <Labs>", "Curie \"Radium\"", "Dirac's", "Euler", "Fermi",
                "Gauss", "Hopper", "Ising", "Jordan" }
local states = { "paid", "shipped", "open", "refunded" }
local orders = {}
do
  local seed = 12345
  local function rand(n) -- Park and Miller's generator: exact in doubles, so in every Lua
    seed = (seed * 16807) % 2147483647
    return seed % n
  end
  for i = 1, ROWS do
    orders[i] = {
      id = 100000 + i,
      customer = names[rand(#names) + 1],
      city = names[rand(#names) + 1] .. " Town",
      qty = rand(50) + 1,
      price = (rand(100000) + 99) / 100,
      state = states[rand(#states) + 1],
      day = rand(28) + 1,
    }
  end
end

local escapes = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                  ["'"] = "&#39;" }
local function esc(s)
  return (gsub(s, "[&<>\"']", escapes))
end

-- 1234567.5 -> "1,234,567.50"
local function money(x)
  local s = format("%.2f", x)
  local int, frac = s:match("^(%d+)(%.%d+)$")
  int = gsub(int:reverse(), "(%d%d%d)", "%1,"):reverse()
  return (gsub(int, "^,", "")) .. frac
end

function M.render(title)
  title = title or "Orders"
  local out, n = {}, 0
  local function put(s)
    n = n + 1
    out[n] = s
  end
  put(format("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head>\n<body>\n",
             esc(title)))
  put(format("<h1>%s</h1>\n<table class=\"orders\">\n", esc(title)))
  put("<tr><th>#</th><th>customer</th><th>city</th><th>qty</th><th>total</th><th>state</th><th>date</th></tr>\n")
  local total, count = 0, 0
  for i = 1, #orders do
    local o = orders[i]
    local sum = o.qty * o.price
    total = total + sum
    count = count + o.qty
    put(format("<tr class=\"%s\"><td>%d</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>2024-%02d-%02d</td></tr>\n",
               (i % 2 == 0) and "even" or "odd", o.id, esc(o.customer), esc(o.city), o.qty,
               money(sum), esc(o.state), floor(o.day % 12) + 1, o.day))
  end
  put(format("<tr><th colspan=\"3\">%d orders</th><th>%d</th><th>%s</th><th colspan=\"2\"></th></tr>\n",
             #orders, count, money(total)))
  put("</table>\n</body></html>\n")
  return concat(out)
end

return M
