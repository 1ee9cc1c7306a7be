/* lstate.c: a worker's Lua state: building it, loading the app, running a request's coroutine. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* Message handler: adds a traceback to string errors (as lua.c does). */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Puts the app's directory first on package.path and the server's module paths after it. */
static void set_paths(lua_State *L, struct server *s, const char *app) {
  const char *slash = strrchr(app, '/');
  lua_getglobal(L, "package");
  if (slash)
    lua_pushlstring(L, app, (size_t)(slash - app));
  else
    lua_pushliteral(L, ".");
  const char *dir = lua_tostring(L, -1);
  if (s->lua_path)
    lua_pushstring(L, s->lua_path);
  else
    lua_getfield(L, -2, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -4, "path");
  lua_pop(L, 2);
  if (s->lua_cpath) {
    lua_pushstring(L, s->lua_cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
}

lua_State *lstate_new(struct worker *w, const char *app, char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state: out of memory");
    return NULL;
  }
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_scgi_core);
  lua_setfield(L, -2, "scgi.core");
  lua_pop(L, 1);
  lclient_open(L);
  set_paths(L, w->srv, app);
  lua_pushcfunction(L, msghandler);
  if (luaL_loadfile(L, app) != LUA_OK || lua_pcall(L, 0, 1, -2) != LUA_OK) {
    snprintf(err, errlen, "cannot load %s: %s", app, lua_tostring(L, -1));
    goto fail;
  }
  if (!lua_isfunction(L, -1)) {
    snprintf(err, errlen, "%s must return the handler function, but it returned %s", app,
             lua_isnone(L, -1) ? "nothing" : luaL_typename(L, -1));
    goto fail;
  }
  w->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return L;
fail:
  lua_close(L);
  return NULL;
}

void lstate_release(struct conn *c) {
  lua_State *L = c->w->L;
  if (c->client) lclient_detach(c->client);
  c->client = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->client_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->co_ref);
  c->client_ref = c->co_ref = LUA_NOREF;
  c->co = NULL;
}

static void set_request_line(struct conn *c, const struct scgi_header *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (h[i].name_len == 14 && memcmp(h[i].name, "REQUEST_METHOD", 14) == 0)
      snprintf(c->method, sizeof c->method, "%s", h[i].value);
    else if (h[i].name_len == 11 && memcmp(h[i].name, "REQUEST_URI", 11) == 0)
      c->uri = strdup(h[i].value);
  }
}

int lstate_start(struct conn *c, const struct scgi_header *h, size_t n) {
  struct worker *w = c->w;
  lua_State *L = w->L;
  if (!lua_checkstack(L, 2)) return -1;
  set_request_line(c, h, n);
  lua_State *co = lua_newthread(L);
  c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->co = co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->handler_ref);
  lua_createtable(co, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(co, h[i].name, h[i].name_len);
    lua_pushlstring(co, h[i].value, h[i].value_len);
    lua_rawset(co, -3);
  }
  c->client = lclient_push(co, c);
  lua_pushvalue(co, -1);
  c->client_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  lstate_run(c, 2);
  return 0;
}

/* The handler raised: log it with a traceback, answer 500 if nothing reached the socket. */
static void request_failed(struct conn *c) {
  lua_State *L = c->w->L, *co = c->co;
  const char *msg = lua_tostring(co, -1);
  if (msg == NULL) {
    if (luaL_callmeta(co, -1, "__tostring") && lua_type(co, -1) == LUA_TSTRING)
      msg = lua_tostring(co, -1);
    else
      msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
  }
  luaL_traceback(L, co, msg, 0);
  slog("#%llu %s %s: handler error: %s", (unsigned long long)c->id, c->method[0] ? c->method : "-",
       c->uri ? c->uri : "-", lua_tostring(L, -1));
  lua_pop(L, 1);
  c->w->errors++;
  lstate_release(c);
#if LUA_VERSION_RELEASE_NUM >= 50406
  lua_closethread(co, L);
#else
  lua_resetthread(co);
#endif
  if (c->state == CONN_RUN && c->bytes_out == 0) {
    c->out_len = c->out_off = 0;
    conn_respond_error(c, 500, NULL);
  } else if (c->state == CONN_RUN) {
    c->out_len = c->out_off = 0; /* part of the response is out: cut it short */
    conn_finish(c);
  } else if (c->state == CONN_CLOSED) {
    conn_close(c);
  }
}

void lstate_run(struct conn *c, int nargs) {
  lua_State *co = c->co;
  int nres = 0;
  int st = lua_resume(co, c->w->L, nargs, &nres);
  if (st == LUA_YIELD) {
    if (c->wait != WAIT_NONE) return;
    lua_pop(co, nres);
    lua_pushliteral(co, "the handler yielded outside of an scgi call (use scgi's functions to "
                        "wait, not coroutine.yield)");
    st = LUA_ERRRUN;
  }
  if (st != LUA_OK) {
    request_failed(c);
    return;
  }
  lua_pop(co, nres);
  int wrote = c->bytes_out > 0 || c->out_len > 0;
  lstate_release(c);
  c->w->served++;
  if (c->state == CONN_RUN && !wrote)
    conn_respond_error(c, 500, "the handler returned without writing a response");
  else if (c->state == CONN_RUN)
    conn_finish(c);
  else if (c->state == CONN_CLOSED)
    conn_close(c);
}
