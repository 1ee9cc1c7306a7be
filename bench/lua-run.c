/* lua-run.c: runs a Lua script with the standard libraries and arg set, nothing more: the plain
   loop of bench/lua.sh built against the same Lua library as a build of scgi-lua (the static
   liblua5.4.a of the profile build, where perf and callgrind see Lua's function names).
     cc -O2 -I/usr/include/lua5.4 -o lua-run bench/lua-run.c /usr/lib/.../liblua5.4.a -lm -ldl
     lua-run bench/apps/loop.lua page 1000 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: lua-run SCRIPT [ARGS...]\n");
    return 2;
  }
  lua_State *L = luaL_newstate();
  if (L == NULL) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 1); /* arg[0] is the script, as lua5.4 sets it */
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  int rc = luaL_dofile(L, argv[1]);
  if (rc != LUA_OK) fprintf(stderr, "lua-run: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return rc == LUA_OK ? 0 : 1;
}
