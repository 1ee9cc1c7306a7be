-- scgi-lua-scm-1.rockspec: builds from the checkout with `luarocks --lua-version=5.4 make`.
rockspec_format = "3.0"
package = "scgi-lua"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- not fetched: `luarocks make` builds the checkout it runs in
}
description = {
  summary = "Serve Lua 5.4 handlers behind nginx, Apache or lighttpd over SCGI, on every core",
  detailed = [[
scgi-lua is a C program and Lua library: a libev core with one thread, one event loop and one
Lua state per core accepts SCGI connections, and runs each request as a coroutine of a Lua
handler that writes the response through a client object without ever blocking the core.
]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  LIBEV = { header = "ev.h", library = "ev" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS) -I$(LIBEV_INCDIR)",
    LDFLAGS = "-L$(LIBEV_LIBDIR)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    BINDIR = "$(BINDIR)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
