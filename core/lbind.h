/* lbind.h: what the binding files (lclient.c, lsocket.c, lshared.c, lcoro.c, lscgi.c) give each
   other and the runtime. */
#ifndef SCGI_LBIND_H
#define SCGI_LBIND_H

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

struct rt_bindings;

struct request;

/* Pushes a request's handler and its arguments on its coroutine (lclient.c). */
int lclient_push_args(lua_State *co, struct request *r);
/* The metatables, created once per state by luaopen_scgi_core; lclient_open leaves the client's
   methods table on the stack. */
void lclient_open(lua_State *L);
void lsocket_open(lua_State *L);
void lshared_open(lua_State *L);
/* The task metatable, and scgi.spawn, wait, kill, timer and every set in the table on top. */
void ltask_open(lua_State *L);
/* Replaces coroutine.resume, wrap, status and close in L's coroutine library (lcoro.c). */
void lcoro_install(lua_State *L);

/* scgi.tcp, in_task, is_socket (lsocket.c) and tls_wrap (ltls.c), in the table on top. */
void lsocket_funcs(lua_State *L);
void ltls_funcs(lua_State *L);
int lshared_get(lua_State *L);
int luaopen_scgi_core(lua_State *L);

/* ---- userdata identity ----
   Every userdata the bindings hand out begins with a tag: the address of its type's name, one
   static array per type (so the tag is also the name its metatable is registered under). A check
   compares that tag and the block's size, not the metatable: debug.setmetatable, or a registry
   changed through debug.getregistry, can give any value a client's or a socket's metatable, but
   nothing in Lua writes into a userdata's memory. */

/* Argument i as the userdata of type tag (size bytes, the tag first), or NULL. */
static inline void *lbind_test(lua_State *L, int i, const char *tag, size_t size) {
  const char *t;
  if (lua_type(L, i) != LUA_TUSERDATA || lua_rawlen(L, i) != size) return NULL;
  void *p = lua_touserdata(L, i);
  memcpy(&t, p, sizeof t);
  return t == tag ? p : NULL;
}

/* Argument i as the userdata of type tag; raises "tag expected, got ..." otherwise. */
static inline void *lbind_check(lua_State *L, int i, const char *tag, size_t size) {
  void *p = lbind_test(L, i, tag, size);
  if (p != NULL) return p;
  const char *got = luaL_typename(L, i);
  if (luaL_getmetafield(L, i, "__name") == LUA_TSTRING) got = lua_tostring(L, -1);
  if (strcmp(got, tag) == 0) got = "another value given its metatable";
  luaL_argerror(L, i, lua_pushfstring(L, "%s expected, got %s", tag, got));
  return NULL;
}

/* Pushes a new userdata of type tag: zeroed, the tag set, its metatable the one named tag. */
static inline void *lbind_new(lua_State *L, const char *tag, size_t size, int nuv) {
  void *p = lua_newuserdatauv(L, size, nuv);
  memset(p, 0, size);
  memcpy(p, &tag, sizeof tag);
  luaL_setmetatable(L, tag);
  return p;
}

/* What the runtime needs from the bindings (lscgi.c). */
extern const struct rt_bindings scgi_bindings;

#endif
