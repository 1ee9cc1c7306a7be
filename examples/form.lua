-- form.lua: an HTML form posted back to itself. GET shows the form; POST reads the
-- application/x-www-form-urlencoded body with scgi.read_form and answers with what it got: the
-- fields (a repeated field is a list), the query string, the cookies and PATH_INFO. POST with
-- ?redirect=1 answers 303 See Other instead (the Post/Redirect/Get pattern).
--   APP=examples/form.lua make run
local scgi = require "scgi"

local page = [[
<!doctype html>
<meta charset="utf-8">
<title>scgi-lua form</title>
<form method="post" action="submit">
  <p><label>Name <input name="name"></label>
  <p><label><input type="checkbox" name="topic" value="math"> math</label>
     <label><input type="checkbox" name="topic" value="engines"> engines</label>
  <p><label>Note <textarea name="note"></textarea></label>
  <p><button>Send</button>
</form>
]]

-- "name = value" lines of t, sorted by name; lists joined with ", ".
local function lines(t, prefix)
  local names, out = {}, {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = t[k]
    if type(v) == "table" then v = table.concat(v, ", ") end
    out[#out + 1] = prefix .. k .. " = " .. v .. "\n"
  end
  return table.concat(out)
end

-- The fields of t as a query string (names sorted, lists as repeated names).
local function encode(t)
  local names, out = {}, {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = t[k]
    for _, item in ipairs(type(v) == "table" and v or { v }) do
      out[#out + 1] = scgi.url_encode(k) .. "=" .. scgi.url_encode(item)
    end
  end
  return table.concat(out, "&")
end

return function(headers, client)
  if headers.REQUEST_METHOD ~= "POST" then
    return client:respond(200, { ["Content-Type"] = "text/html; charset=utf-8" }, page)
  end
  local form, err = scgi.read_form(headers, client, 64 * 1024)
  if not form then
    local status = err == "form body too large" and 413 or 415
    return client:respond(status, { ["Content-Type"] = "text/plain" }, err .. "\n")
  end
  local query = scgi.parse_query(headers.QUERY_STRING)
  if query.redirect then return client:redirect("/thanks?" .. encode(form), 303) end
  local path_info, script_name = scgi.path_info(headers)
  client:respond(200, { ["Content-Type"] = "text/plain; charset=utf-8" }, table.concat({
    lines(form, ""),
    lines(query, "query "),
    lines(scgi.parse_cookies(headers.HTTP_COOKIE), "cookie "),
    "path_info = ", path_info, "\n",
    "script_name = ", script_name, "\n",
  }))
end
