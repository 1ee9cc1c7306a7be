-- gen_conn_corpus.lua: writes the seed corpus of fuzz_conn.c into fuzz/corpus/conn/.
--   lua5.4 fuzz/gen_conn_corpus.lua [fuzz]      (run from the repository's root)
--
-- A seed is the target's input: a flags byte, a byte holding the number of chunk sizes (low
-- nibble), the loop turns between chunks (1 or 2) and more flags, the chunk sizes, then the bytes
-- the web server sends (see the comment at the top of fuzz_conn.c).
--
-- The requests: what nginx 1.22 sent (captured with a private nginx-light whose scgi_pass went to
-- a LuaSocket listener: fuzz/captures/nginx-*.scgi), header sets written here from what Apache's
-- mod_proxy_scgi and lighttpd's mod_scgi send (their documented CGI variables, in their order:
-- Apache puts CONTENT_LENGTH and SCGI first, then the request's subprocess_env; lighttpd puts
-- CONTENT_LENGTH first and SCGI last), requests that steer the test app through REQUEST_URI, and
-- one request of each malformed class.
local dir = arg[1] or "fuzz"
local out = dir .. "/corpus/conn/"

local F_CLOSE, F_DRAIN, F_TWIN, F_CROWD, F_TCP, F_GC, F_STALL, F_BUDGET = 1, 2, 4, 8, 16, 32, 64, 128
local RELOAD, NOPOOL, ABANDON = 32, 64, 128 -- in the second byte, with the count of chunk sizes

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- headers: a list of {name, value}; the netstring around them, then the body.
local function scgi(headers, body, opts)
  opts = opts or {}
  local parts = {}
  for _, h in ipairs(headers) do parts[#parts + 1] = h[1] .. "\0" .. h[2] .. "\0" end
  local block = table.concat(parts)
  local len = opts.len or tostring(#block)
  return len .. ":" .. block .. (opts.comma or ",") .. (body or "")
end

-- A size byte for a chunk of n bytes (1..128, or a multiple of 64 up to 8192).
local function size_byte(n)
  if n <= 128 then return n - 1 end
  return 0x80 | (n // 64 - 1)
end

local count = 0
local function seed(name, flags, chunks, turns, req, byte1)
  assert(#chunks <= 15 and (turns == 1 or turns == 2))
  local sizes = {}
  for i, n in ipairs(chunks) do sizes[i] = string.char(size_byte(n)) end
  local f = assert(io.open(out .. name, "wb"))
  f:write(string.char(flags, #chunks | ((turns - 1) << 4) | (byte1 or 0)), table.concat(sizes), req)
  f:close()
  count = count + 1
end

local function with_body(headers, body)
  local h = { { "CONTENT_LENGTH", tostring(#body) } }
  for _, kv in ipairs(headers) do h[#h + 1] = kv end
  return scgi(h, body)
end

-- nginx, as captured.
local captures = {
  "get-query", "head", "post-form", "put-text", "post-multipart", "post-chunked", "post-20k",
}
for i, name in ipairs(captures) do
  local req = read(dir .. "/captures/nginx-" .. name .. ".scgi")
  seed("nginx_" .. name, 0, {}, 1, req)
  -- the same, cut at a few places (inside the length, the block, at the comma, in the body)
  local colon = req:find(":", 1, true)
  local comma = req:find(",", colon + tonumber(req:sub(1, colon - 1)), true)
  if i <= 4 then seed("nginx_" .. name .. "_split", F_DRAIN, { 2, colon, comma - colon - 1, 1, 7 }, 1, req) end
end
local big = read(dir .. "/captures/nginx-post-20k.scgi")
seed("nginx_post-20k_chunks", F_DRAIN, { 64, 512, 4096, 1024, 8192 }, 2, big)

-- Apache httpd 2.4 mod_proxy_scgi: CONTENT_LENGTH, SCGI, then the CGI variables of
-- ap_add_common_vars and ap_add_cgi_vars (HTTP_* first, GATEWAY_INTERFACE dropped).
local function apache(method, uri, query, body, ctype)
  local h = {
    { "CONTENT_LENGTH", tostring(#body) }, { "SCGI", "1" },
    { "HTTP_HOST", "www.example.org" }, { "HTTP_USER_AGENT", "curl/7.88.1" }, { "HTTP_ACCEPT", "*/*" },
  }
  if ctype then
    h[#h + 1] = { "CONTENT_TYPE", ctype }
    h[#h + 1] = { "HTTP_CONTENT_LENGTH", tostring(#body) } -- not CONTENT_LENGTH: Apache maps it
  end
  for _, kv in ipairs({
    { "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
    { "SERVER_SIGNATURE", "<address>Apache/2.4.57 (Debian) Server at www.example.org Port 80</address>\n" },
    { "SERVER_SOFTWARE", "Apache/2.4.57 (Debian)" }, { "SERVER_NAME", "www.example.org" },
    { "SERVER_ADDR", "127.0.0.1" }, { "SERVER_PORT", "80" }, { "REMOTE_ADDR", "127.0.0.1" },
    { "DOCUMENT_ROOT", "/var/www/html" }, { "REQUEST_SCHEME", "http" }, { "CONTEXT_PREFIX", "" },
    { "CONTEXT_DOCUMENT_ROOT", "/var/www/html" }, { "SERVER_ADMIN", "webmaster@localhost" },
    { "SCRIPT_FILENAME", "proxy:scgi://127.0.0.1:4000" .. uri }, { "REMOTE_PORT", "51234" },
    { "SERVER_PROTOCOL", "HTTP/1.1" }, { "REQUEST_METHOD", method }, { "QUERY_STRING", query },
    { "REQUEST_URI", uri .. (query ~= "" and "?" .. query or "") }, { "SCRIPT_NAME", uri },
  }) do h[#h + 1] = kv end
  return scgi(h, body)
end
seed("apache_get", 0, {}, 1, apache("GET", "/app/wfw", "a=1&b=2", ""))
seed("apache_post", F_DRAIN, { 100, 300 }, 1,
  apache("POST", "/app/lLq", "", "first line\nsecond line\nno newline at the end",
    "application/x-www-form-urlencoded"))

-- lighttpd 1.4 mod_scgi (http_cgi_headers): CONTENT_LENGTH first, SCGI last.
local function lighttpd(method, uri, query, body, ctype)
  local h = {
    { "CONTENT_LENGTH", tostring(#body) }, { "QUERY_STRING", query },
    { "REQUEST_URI", uri .. (query ~= "" and "?" .. query or "") }, { "REDIRECT_STATUS", "200" },
    { "SCRIPT_NAME", uri }, { "SCRIPT_FILENAME", "/var/www" .. uri }, { "DOCUMENT_ROOT", "/var/www" },
    { "REQUEST_METHOD", method }, { "SERVER_PROTOCOL", "HTTP/1.1" },
    { "SERVER_SOFTWARE", "lighttpd/1.4.69" }, { "GATEWAY_INTERFACE", "CGI/1.1" },
    { "REQUEST_SCHEME", "http" }, { "SERVER_PORT", "80" }, { "SERVER_ADDR", "127.0.0.1" },
    { "SERVER_NAME", "localhost" }, { "REMOTE_ADDR", "127.0.0.1" }, { "REMOTE_PORT", "40312" },
    { "HTTP_HOST", "localhost" }, { "HTTP_USER_AGENT", "Wget/1.21.3" }, { "HTTP_ACCEPT", "*/*" },
  }
  if ctype then
    h[#h + 1] = { "CONTENT_TYPE", ctype }
    h[#h + 1] = { "HTTP_CONTENT_LENGTH", tostring(#body) }
  end
  h[#h + 1] = { "SCGI", "1" }
  return scgi(h, body)
end
seed("lighttpd_get", 0, {}, 1, lighttpd("GET", "/i", "", ""))
seed("lighttpd_post", F_DRAIN, { 16, 16, 16 }, 1,
  lighttpd("POST", "/s9a", "x=y", "0123456789abcdefghij\nsecond\n", "text/plain"))

-- The test app's steps, through REQUEST_URI, on a small body.
local lines = "alpha\nbeta\ngamma\n\ndelta without newline"
local function steps(uri, body)
  return with_body({ { "SCGI", "1" }, { "REQUEST_METHOD", "POST" }, { "REQUEST_URI", uri } }, body or lines)
end
local step_seeds = {
  { "read_lines", "/lLlLll" }, { "read_all_star", "/*a" }, { "read_counts", "/0135k9K" },
  { "write_flush", "/wfwfq" }, { "write_big", "/bB" }, { "respond_list", "/lr" },
  { "respond_string", "/as" }, { "respond_iter", "/lli" }, { "respond_then_write", "/aT" },
  { "error", "/e" }, { "error_after_write", "/wfe" }, { "error_object", "/E" },
  { "error_nil", "/z" }, { "error_table", "/Z" }, { "close", "/c" }, { "write_close_read", "/wcl" },
  { "tbc", "/u" }, { "return_nothing", "/n" }, { "yield", "/y" }, { "sleep", "/SlSw" },
  { "pcall_read", "/pP" }, { "other_coroutine", "/C" }, { "memory", "/M" }, { "bad_header", "/h" },
  { "closed_tostring_gc", "/xtgW" }, { "bad_read_args", "/!" }, { "negative_read", "/-" },
  { "bad_write_arg", "/wo" }, { "close_handler_write", "/Dwa" }, { "close_handler_error", "/Dwfe" },
  { "close_handler_sleep", "/Yl" }, { "cpu", "/HlH" }, { "read_default", "/RRRR" },
  { "closed_client_calls", "/ctx" }, { "read_zero_at_end", "/a0" }, { "budget", "/UwSVSa" },
  { "sleep_after_close", "/awcQSQ" }, -- body read first: no linger (see fuzz/regressions/conn/)
  { "error_tostring_raises", "/O" }, { "error_tostring_number", "/N" },
  { "error_tostring_yields", "/j" }, { "coroutine_waits", "/vw" }, { "generator_sleeps", "/FaF" },
  { "coroutine_bare_yield", "/Aw" }, { "nested_serve", "/mw" },
}
for _, s in ipairs(step_seeds) do seed("app_" .. s[1], 0, {}, 1, steps(s[2])) end
-- and in the flag modes
seed("mode_close", F_CLOSE, { 30 }, 1, steps("/la"))
seed("mode_close_midbody", F_CLOSE, { 70 }, 1, steps("/a"):sub(1, 75))
seed("mode_twin", F_TWIN | F_DRAIN, { 40, 20 }, 2, steps("/lSw"))
seed("mode_twin_close", F_TWIN | F_CLOSE, { 10 }, 1, steps("/bq"))
seed("mode_crowd", F_CROWD, {}, 1, steps("/a"))
seed("mode_tcp", F_TCP, { 50 }, 1, steps("/Sxw"))
seed("mode_gc", F_GC | F_DRAIN, { 20, 20, 20 }, 1, steps("/lLa"))
seed("mode_stall_head", F_STALL, { 20 }, 1, steps("/a"):sub(1, 20))
seed("mode_stall_body", F_STALL, { 70 }, 1, steps("/a"):sub(1, 80))
seed("mode_stall_write", F_STALL, {}, 1, steps("/bB"))
seed("mode_budget", F_BUDGET, { 40 }, 2, steps("/SlSlSwSa"))
seed("mode_budget_stall", F_BUDGET | F_STALL, { 60 }, 1, steps("/Dwfa"):sub(1, 70))
seed("mode_nopool_twin", F_TWIN | F_DRAIN, { 30 }, 1, steps("/Sla"), NOPOOL)
seed("mode_nopool_error", 0, {}, 1, steps("/wfe"), NOPOOL)
seed("mode_crowd_twin", F_CROWD | F_TWIN, {}, 1, steps("/a"))
seed("mode_close_flush", F_CLOSE, {}, 1, steps("/bbb"))
seed("mode_close_write_parked", F_CLOSE, { 90 }, 2, steps("/bBbBa"))
seed("mode_budget_cpu", F_BUDGET, {}, 1, steps("/HwHH"))
seed("mode_budget_close_loops", F_BUDGET, {}, 1, steps("/X"))
seed("mode_budget_wrap_loops", F_BUDGET, {}, 1, steps("/wJ"))
seed("mode_reload", F_TWIN | F_DRAIN, { 60 }, 2, steps("/lSla"), RELOAD)
seed("mode_reload_nopool", 0, { 50 }, 1, steps("/Sa"), RELOAD | NOPOOL)
seed("mode_abandon", 0, { 80 }, 1, steps("/Sa"):sub(1, 90), ABANDON)
seed("mode_abandon_close_handlers", F_TWIN, { 80 }, 1, steps("/DYwfa"):sub(1, 90), ABANDON)
seed("mode_body_bytewise", F_DRAIN, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 1,
  steps("/3l", "ab\ncd\nef"))

-- Malformed requests, one of each class (each answered 400, 431 or 413, or not at all).
local ok = { { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "REQUEST_URI", "/" } }
local function mal(name, req) seed("bad_" .. name, 0, {}, 1, req) end
mal("length_char", "1x:" .. scgi(ok):sub(4))
mal("length_empty", ":" .. scgi(ok):match(":(.*)"))
mal("leading_zero", "0" .. scgi(ok))
mal("missing_comma", scgi(ok, "", { comma = ";" }))
mal("missing_nul", "23:CONTENT_LENGTH\0000\0SCGI\0001,")
mal("empty_name", scgi({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "", "x" } }))
mal("cl_not_first", scgi({ { "SCGI", "1" }, { "CONTENT_LENGTH", "0" } }))
mal("cl_not_digits", scgi({ { "CONTENT_LENGTH", "12a" }, { "SCGI", "1" } }, "123456789012"))
mal("cl_empty", scgi({ { "CONTENT_LENGTH", "" }, { "SCGI", "1" } }))
mal("cl_20_digits", scgi({ { "CONTENT_LENGTH", "18446744073709551616" }, { "SCGI", "1" } }))
mal("missing_scgi", scgi({ { "CONTENT_LENGTH", "0" }, { "REQUEST_URI", "/" } }))
mal("scgi_not_1", scgi({ { "CONTENT_LENGTH", "0" }, { "SCGI", "2" } }))
mal("repeated_cl", scgi({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "CONTENT_LENGTH", "4" } }, "abcd"))
mal("repeated_scgi", scgi({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "SCGI", "1" } }))
-- a repeated name that is not CONTENT_LENGTH or SCGI is merged (nginx 1.22 sends them)
seed("repeated_name", 0, {}, 1, scgi({ { "CONTENT_LENGTH", "0" }, { "SCGI", "1" },
  { "HTTP_COOKIE", "a=1" }, { "REQUEST_URI", "/w" }, { "HTTP_COOKIE", "b=2" } }))
mal("empty_block", "0:,")
local filler = {}
for i = 1, 500 do filler[i] = { "HTTP_X_FILLER_" .. i, ("v"):rep(4) } end
local oversized = { { "CONTENT_LENGTH", "0" }, { "SCGI", "1" } }
for _, kv in ipairs(filler) do oversized[#oversized + 1] = kv end
mal("oversized_header", scgi(oversized))
mal("oversized_length", "99999999:" .. scgi(ok):match(":(.*)"))
local many = { { "CONTENT_LENGTH", "0" }, { "SCGI", "1" } }
for i = 1, 1100 do many[#many + 1] = { string.char(65 + i % 26, 65 + i // 26 % 26, 65 + i // 676), "" } end
mal("too_many_headers", scgi(many))
local at_limit = { { "CONTENT_LENGTH", "0" }, { "SCGI", "1" }, { "REQUEST_URI", "/" } }
local block = #scgi(at_limit):match(":(.*),$")
at_limit[#at_limit + 1] = { "HTTP_PAD", ("p"):rep(4096 - block - 10) }
assert(#scgi(at_limit):match(":(.*),$") == 4096)
seed("limit_header_4096", 0, {}, 1, scgi(at_limit))
local sixty = { { "CONTENT_LENGTH", "5" }, { "SCGI", "1" }, { "REQUEST_URI", "/lq" } }
for i = 1, 60 do sixty[#sixty + 1] = { "HTTP_X_" .. i, tostring(i) } end -- past the cached slots
seed("many_headers_63", 0, {}, 1, scgi(sixty, "body\n"))
mal("oversized_body", scgi({ { "CONTENT_LENGTH", "70000" }, { "SCGI", "1" } }, ("x"):rep(100)))
seed("limit_body_65536", F_DRAIN, { 8192, 8192, 8192, 8192, 8192, 8192, 8192, 8192 }, 1,
  scgi({ { "CONTENT_LENGTH", "65536" }, { "SCGI", "1" }, { "REQUEST_URI", "/K" } }, ("y"):rep(65536)))
mal("truncated_length", "12")
mal("truncated_block", scgi(ok):sub(1, 20))
mal("truncated_before_comma", scgi(ok):sub(1, -2))
mal("truncated_body", scgi({ { "CONTENT_LENGTH", "100" }, { "SCGI", "1" }, { "REQUEST_URI", "/a" } }, "only ten.."))
mal("bytes_after_body", scgi({ { "CONTENT_LENGTH", "3" }, { "SCGI", "1" } }, "abcEXTRA BYTES PAST THE BODY"))
mal("not_scgi_http", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
mal("empty", "")

io.write(count, " seeds in ", out, "\n")
