-- spec/request_spec.lua: scgi.request in plain Lua (URL coding, query strings, forms, cookies,
-- PATH_INFO), and a form POST end to end through a real nginx to examples/form.lua.
local request = require "scgi.request"
local H = require "helper"

describe("scgi.request", function()
  describe("url_decode", function()
    it("decodes %XX escapes, upper and lower case", function()
      assert.equal("a b/c?d", request.url_decode("a%20b%2Fc%3fd"))
      assert.equal("\0\255", request.url_decode("%00%FF"))
    end)

    it("keeps + unless asked to read it as a space", function()
      assert.equal("a+b", request.url_decode("a+b"))
      assert.equal("a b", request.url_decode("a+b", true))
    end)

    it("leaves malformed escapes as they are", function()
      assert.equal("%zz%4%", request.url_decode("%zz%4%"))
      assert.equal("100%", request.url_decode("100%"))
      assert.equal("%%41", request.url_decode("%%2541"))
    end)

    it("raises bad argument for a non-string", function()
      assert.error_matches(function() request.url_decode(nil) end, "bad argument #1 to 'url_decode'")
      assert.error_matches(function() request.url_decode({}) end, "string expected, got table")
    end)
  end)

  describe("url_encode", function()
    it("keeps the unreserved characters and encodes the rest in upper case", function()
      assert.equal("AZaz09-._~", request.url_encode("AZaz09-._~"))
      assert.equal("a%20b%2B%2F%3F%26%3D%25%C3%A9%00", request.url_encode("a b+/?&=%\xc3\xa9\0"))
    end)

    it("round-trips every byte", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      local enc = request.url_encode(all)
      assert.is_nil(enc:find("[^A-Za-z0-9%-._~%%]"))
      assert.equal(all, request.url_decode(enc))
    end)

    it("raises bad argument for a non-string", function()
      assert.error_matches(function() request.url_encode(1) end, "bad argument #1 to 'url_encode'")
    end)
  end)

  describe("parse_query", function()
    it("gives {} for nil and the empty string", function()
      assert.same({}, request.parse_query(nil))
      assert.same({}, request.parse_query(""))
    end)

    it("decodes names and values, + as a space", function()
      assert.same({ a = "1", ["b c"] = "x y&z", ["é"] = "=" },
        request.parse_query("a=1&b+c=x+y%26z&%C3%A9=%3D"))
    end)

    it("gives a list for a repeated name, in order", function()
      local q = request.parse_query("a=1&b=2&a=3&a=&c=4")
      assert.same({ "1", "3", "" }, q.a)
      assert.equal("2", q.b)
      assert.equal("4", q.c)
    end)

    it("gives names without = the empty string", function()
      assert.same({ flag = "", x = "1", other = "" }, request.parse_query("flag&x=1&other"))
    end)

    it("keeps the value after the first = whole", function()
      assert.same({ a = "b=c=d" }, request.parse_query("a=b=c=d"))
    end)

    it("skips empty pieces and empty names", function()
      assert.same({ a = "1", b = "2" }, request.parse_query("&&a=1&&=x&b=2&"))
    end)

    it("never raises on malformed escapes", function()
      assert.same({ ["%zz"] = "%", ["a%"] = "100%" }, request.parse_query("%zz=%&a%=100%"))
    end)

    it("raises bad argument for a non-string", function()
      assert.error_matches(function() request.parse_query(42) end, "bad argument #1 to 'parse_query'")
    end)
  end)

  describe("parse_form", function()
    it("parses an urlencoded body like a query string", function()
      assert.same({ name = "Ada Lovelace", tags = { "x", "y" }, note = "line1\r\nline2" },
        request.parse_form("name=Ada+Lovelace&tags=x&tags=y&note=line1%0D%0Aline2"))
      assert.same({}, request.parse_form(""))
    end)

    it("raises bad argument for a non-string", function()
      assert.error_matches(function() request.parse_form(true) end, "bad argument #1 to 'parse_form'")
    end)
  end)

  describe("read_form", function()
    -- A fake client whose read("a") returns body once.
    local function fake(body)
      return { read = function(self, fmt)
        assert.equal("a", fmt)
        local b = self.body
        self.body = ""
        return b
      end, body = body }
    end

    it("reads and parses an urlencoded body", function()
      local h = { CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8", CONTENT_LENGTH = "7" }
      assert.same({ a = "1", b = "" }, request.read_form(h, fake("a=1&b=")))
    end)

    it("refuses another Content-Type and a body over the limit", function()
      local f, err = request.read_form({ CONTENT_TYPE = "text/plain", CONTENT_LENGTH = "3" }, fake("a=1"))
      assert.is_nil(f)
      assert.matches("not an application/x%-www%-form%-urlencoded body", err)
      f, err = request.read_form({ CONTENT_TYPE = "application/x-www-form-urlencoded",
        CONTENT_LENGTH = "11" }, fake("a=123456789"), 10)
      assert.is_nil(f)
      assert.equal("form body too large", err)
    end)

    it("raises bad argument without headers or client", function()
      assert.error_matches(function() request.read_form(nil, fake("")) end, "bad argument #1 to 'read_form'")
      assert.error_matches(function() request.read_form({}) end, "bad argument #2 to 'read_form'")
    end)
  end)

  describe("parse_cookies", function()
    it("gives {} for nil and the empty string", function()
      assert.same({}, request.parse_cookies(nil))
      assert.same({}, request.parse_cookies(""))
    end)

    it("splits at ; and trims whitespace", function()
      assert.same({ a = "1", b = "2", c = "x y" }, request.parse_cookies("a=1; b=2;c = x y ;"))
    end)

    it("unquotes quoted values and keeps = inside values", function()
      assert.same({ q = "hello world", t = "a=b", e = "" }, request.parse_cookies('q="hello world"; t=a=b; e=""'))
    end)

    it("keeps the first of a repeated name and skips pieces without =", function()
      assert.same({ id = "first", x = "1" }, request.parse_cookies("id=first; junk; id=second; x=1"))
    end)

    it("does not decode the values", function()
      assert.same({ v = "a%20b+c" }, request.parse_cookies("v=a%20b+c"))
    end)

    it("raises bad argument for a non-string", function()
      assert.error_matches(function() request.parse_cookies({}) end, "bad argument #1 to 'parse_cookies'")
    end)
  end)

  describe("path_info", function()
    it("uses PATH_INFO and SCRIPT_NAME when the web server sent them", function()
      local p, s = request.path_info({ PATH_INFO = "/x y", SCRIPT_NAME = "/app", REQUEST_URI = "/other" })
      assert.equal("/x y", p)
      assert.equal("/app", s)
      p, s = request.path_info({ PATH_INFO = "", SCRIPT_NAME = "/app" })
      assert.equal("", p)
      assert.equal("/app", s)
    end)

    it("takes DOCUMENT_URI (already decoded by nginx) as it is", function()
      local p, s = request.path_info({ DOCUMENT_URI = "/a b/%41", REQUEST_URI = "/a%20b/%2541?q=1" })
      assert.equal("/a b/%41", p)
      assert.equal("", s)
    end)

    it("decodes REQUEST_URI's path without the query string", function()
      local p, s = request.path_info({ REQUEST_URI = "/caf%C3%A9/a+b?x=%20#frag" })
      assert.equal("/caf\xc3\xa9/a+b", p)
      assert.equal("", s)
      assert.equal("/p", (request.path_info({ REQUEST_URI = "http://example.org:8080/p?q" })))
      assert.equal("/", (request.path_info({ REQUEST_URI = "/?only=query" })))
    end)

    it("gives / without any URI", function()
      local p, s = request.path_info({})
      assert.equal("/", p)
      assert.equal("", s)
    end)

    it("takes a SCRIPT_NAME sent alone off the front of the derived path", function()
      assert.same({ "/users/1", "/app" }, { request.path_info({ SCRIPT_NAME = "/app", DOCUMENT_URI = "/app/users/1" }) })
      assert.same({ "", "/app" }, { request.path_info({ SCRIPT_NAME = "/app", REQUEST_URI = "/app?x" }) })
      assert.same({ "/application", "/app" }, { request.path_info({ SCRIPT_NAME = "/app", DOCUMENT_URI = "/application" }) })
    end)

    it("raises bad argument without a headers table", function()
      assert.error_matches(function() request.path_info("x") end, "bad argument #1 to 'path_info'")
    end)
  end)
end)

describe("a form POST through nginx to examples/form.lua", function()
  local srv = H.serve(H.root .. "/examples/form.lua", { workers = 1 })
  local ng = H.nginx_for(srv)

  it("shows the form on GET", function()
    local body, headers = H.http_ok(ng.port, "GET", "/")
    assert.matches("^text/html", headers["content-type"])
    assert.matches('<form method="post"', body, 1, true)
  end)

  it("parses the fields, repeated ones as lists, and the cookie", function()
    local body = "name=Ada+Lovelace&topic=math&topic=engines&note=%3Cb%3E+%26+100%25&bad=%zz"
    local got, headers = H.http_ok(ng.port, "POST", "/submit?from=spec", body,
      { ["Content-Type"] = "application/x-www-form-urlencoded", Cookie = "session=abc; theme=\"dark\"" })
    assert.matches("^text/plain", headers["content-type"])
    assert.matches("name = Ada Lovelace\n", got, 1, true)
    assert.matches("topic = math, engines\n", got, 1, true)
    assert.matches("note = <b> & 100%\n", got, 1, true)
    assert.matches("bad = %zz\n", got, 1, true)
    assert.matches("query from = spec\n", got, 1, true)
    assert.matches("cookie session = abc\n", got, 1, true)
    assert.matches("cookie theme = dark\n", got, 1, true)
    assert.matches("path_info = /submit\n", got, 1, true)
    assert.matches("script_name = \n", got, 1, true)
  end)

  it("answers 415 to a POST that is not a form and 303 with ?redirect", function()
    local status = H.http(ng.port, "POST", "/", "x", { ["Content-Type"] = "text/plain" })
    assert.equal(415, status)
    local st, headers = H.http(ng.port, "POST", "/?redirect=1", "a=1",
      { ["Content-Type"] = "application/x-www-form-urlencoded" })
    assert.equal(303, st)
    assert.equal("/thanks?a=1", headers.location)
  end)

  it("gets the decoded PATH_INFO from nginx's DOCUMENT_URI", function()
    local got = H.http_ok(ng.port, "POST", "/caf%C3%A9/a%20b?x=1", "k=v",
      { ["Content-Type"] = "application/x-www-form-urlencoded" })
    assert.matches("path_info = /caf\xc3\xa9/a b\n", got, 1, true)
  end)
end)
