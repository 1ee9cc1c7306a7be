/* lbind.h: what the binding files (lclient.c, lsocket.c, lshared.c, lcoro.c, lscgi.c) give each
   other and the runtime. */
#ifndef SCGI_LBIND_H
#define SCGI_LBIND_H

#include <lua.h>

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

/* What the runtime needs from the bindings (lscgi.c). */
extern const struct rt_bindings scgi_bindings;

#endif
