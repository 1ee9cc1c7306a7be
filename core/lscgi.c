/* lscgi.c: luaopen_scgi_core, the C side of require "scgi" (serve, sleep, worker, now, connect,
   shared), and what the runtime needs from the bindings. */
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "lbind.h"
#include "luasocket_lua.h"
#include "rt.h"
#include "server.h"
#include "task.h"
#include "worker.h"

/* Copies the options table's entries into the config; raises on an unknown or bad one. */
static void read_options(lua_State *L, int idx, struct scgi_config *cfg) {
  char err[512];
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "option names must be strings");
    const char *name = lua_tostring(L, -2);
    if (strcmp(name, "shared") == 0 && lua_istable(L, -1)) { /* shared = { NAME = SIZE, ... } */
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        const char *spec = lua_pushfstring(L, "%s:%s", lua_tostring(L, -2), lua_tostring(L, -1));
        if (config_set(cfg, "shared", spec, err, sizeof err) < 0) luaL_error(L, "%s", err);
        lua_pop(L, 2);
      }
      lua_pop(L, 1);
      continue;
    }
    const char *value =
        lua_type(L, -1) == LUA_TBOOLEAN ? (lua_toboolean(L, -1) ? "1" : "0") : lua_tostring(L, -1);
    if (value == NULL) luaL_error(L, "option '%s' must be a string or a number", name);
    int known = config_known(name);
    if (!known || known == 3) luaL_error(L, "unknown option '%s'", name);
    if (config_set(cfg, name, value, err, sizeof err) < 0) luaL_error(L, "%s", err);
    lua_pop(L, 1);
  }
  if (config_check(cfg, err, sizeof err) < 0) luaL_error(L, "%s", err);
}

/* serve(handler, options): a function runs in this state (one worker); a path runs in a pool of
   worker states. Blocks until SIGTERM or SIGINT; returns true, or nil and a message. */
static int l_serve(lua_State *L) {
  struct server s;
  char err[1024];
  int fn = lua_type(L, 1) == LUA_TFUNCTION;
  if (rt_self())
    return luaL_error(L, "scgi.handle_requests cannot be called inside a running server (from a "
                         "handler or an app file)");
  if (!fn) luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&s, 0, sizeof s);
  config_init(&s.cfg);
  if (lua_istable(L, 2)) read_options(L, 2, &s.cfg);
  s.fn_ref = LUA_NOREF;
  s.bindings = &scgi_bindings;
  if (fn) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    memset(lua_getextraspace(lua_tothread(L, -1)), 0, LUA_EXTRASPACE); /* copied to coroutines */
    lua_pop(L, 1);
    lcoro_install(L);
    s.fn_L = lua_newthread(L); /* index 3: the state the handler's coroutines come from */
    lua_pushvalue(L, 1);
    s.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    s.cfg.app = lua_tostring(L, 1);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
    s.lua_path = lua_tostring(L, -2); /* stay on the stack while the server runs */
    s.lua_cpath = lua_tostring(L, -1);
  }
  sigset_t mask;
  pthread_sigmask(SIG_SETMASK, NULL, &mask);
  int rc = server_run(&s, err, sizeof err);
  pthread_sigmask(SIG_SETMASK, &mask, NULL); /* server_run leaves the stop signals blocked */
  if (fn) luaL_unref(L, LUA_REGISTRYINDEX, s.fn_ref);
  if (rc != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* scgi.sleep(seconds): parks the running task on a timer; other requests go on. */
static int l_sleep(lua_State *L) {
  lua_Number secs = luaL_checknumber(L, 1);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "duration out of range");
  return task_sleep(L, task_running(L, "scgi.sleep"), (double)secs, 0, sleep_k);
}

static void set_int(lua_State *L, const char *name, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

/* scgi.worker(): this worker's figures, named as in --stats, or nil outside a worker. */
static int l_worker(lua_State *L) {
  struct rt *rt = rt_self();
  if (rt == NULL) {
    luaL_pushfail(L);
    return 1;
  }
  struct worker *w = rt->w;
  lua_createtable(L, 0, 12);
  set_int(L, "id", (uint64_t)w->id);
  set_int(L, "requests", stat_get(&w->st->requests));
  set_int(L, "errors", stat_get(&w->st->errors));
  set_int(L, "connections", stat_get(&w->st->connections));
  set_int(L, "active_connections", w->nconns);
  set_int(L, "active_requests", rt->nlive);
  set_int(L, "bytes_in", stat_get(&w->st->bytes_in));
  set_int(L, "bytes_out", stat_get(&w->st->bytes_out));
  set_int(L, "lua_memory", rt->mem.used);
  set_int(L, "lua_memory_limit", rt->mem.limit);
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, clock_now());
  return 1;
}

int luaopen_scgi_core(lua_State *L) {
  static const luaL_Reg funcs[] = {{"serve", l_serve},      {"sleep", l_sleep},
                                   {"worker", l_worker},    {"now", l_now},
                                   {"shared", lshared_get}, {NULL, NULL}};
  lsocket_open(L);
  lshared_open(L);
  lclient_open(L); /* the client's methods */
  luaL_newlib(L, funcs);
  ltask_open(L);
  lsocket_funcs(L);
  ltls_funcs(L);
  if (luaL_loadbuffer(L, luasocket_lua, sizeof luasocket_lua - 1, "=scgi/luasocket.lua") != LUA_OK)
    return lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0); /* scgi.connect, and LuaSocket and LuaSec made cooperative in tasks */
  lua_pushliteral(L, SCGI_VERSION);
  lua_setfield(L, -2, "version");
  lua_insert(L, -2);
  lua_setfield(L, -2, "client_methods"); /* lets Lua modules add methods to every client */
  return 1;
}

/* os.exit in a worker state: it would end the serving process and every request in flight with
   it, so it raises instead: while the app file loads (the start or reload fails, saying so), or
   in the request or timer that called it (500). */
static int l_exit(lua_State *L) {
  char code[32] = "";
  if (lua_isboolean(L, 1))
    snprintf(code, sizeof code, "%s", lua_toboolean(L, 1) ? "true" : "false");
  else if (lua_type(L, 1) == LUA_TNUMBER)
    snprintf(code, sizeof code, "%s", lua_tostring(L, 1));
  else if (!lua_isnoneornil(L, 1))
    snprintf(code, sizeof code, "%s", luaL_typename(L, 1));
  struct rt *rt = rt_self();
  if (rt && rt->loader) return luaL_error(L, "the app called os.exit(%s) while loading", code);
  return luaL_error(L,
                    "os.exit(%s) is refused in a worker: it would end the serving process and "
                    "every request in flight (raise an error or answer a status instead)",
                    code);
}

/* Before a worker state loads the app: scgi.core loaded (so every client has its metatable), and
   the coroutine library that lets user coroutines wait. */
static void prepare(lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  memset(lua_getextraspace(lua_tothread(L, -1)), 0, LUA_EXTRASPACE); /* copied to coroutines */
  lua_pop(L, 1);
  luaL_requiref(L, "scgi.core", luaopen_scgi_core, 0);
  lua_pop(L, 1);
  lcoro_install(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, l_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
}

const struct rt_bindings scgi_bindings = {prepare, lclient_push_args};
