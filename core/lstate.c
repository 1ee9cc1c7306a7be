/* lstate.c: a worker's Lua state: building it, loading the app, running a request's coroutine. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server.h"

#define HOOK_COUNT 10000 /* VM instructions between two looks at the clock by the CPU guard */
#define SLICE 0.02       /* seconds a request runs before its reads and writes let others in */

/* Per thread, not global: each worker thread runs exactly one worker. */
__thread struct worker *lstate_worker;

double lstate_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The allocator of a worker's state: counts the bytes in use and, while a request runs, refuses
   to go over --memory-limit (Lua then raises "not enough memory" in that request). */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct worker *w = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    w->mem_used -= old;
    free(ptr);
    return NULL;
  }
  if (nsize > old && w->mem_limited && w->mem_limit && w->mem_used + (nsize - old) > w->mem_limit)
    return NULL;
  void *p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  w->mem_used = w->mem_used - old + nsize;
  return p;
}

/* The CPU guard: a count hook that stops a handler running Lua without yielding for too long.
   Once it fired, it raises at every instruction of that coroutine, so a pcall that catches the
   error cannot keep the handler alive: the error reaches the top of the request. */
static void cpu_hook(lua_State *L, lua_Debug *ar) {
  struct worker *w = lstate_worker;
  struct conn *c = w ? w->current : NULL;
  (void)ar;
  if (c == NULL) return;
  if (!c->cpu_killed && !c->budget_killed) {
    double now = lstate_now();
    if (now - w->resume_start >= SLICE) w->slice_over = 1; /* reads and writes now yield */
    if (c->deadline > 0 && now >= c->deadline)
      c->budget_killed = 1; /* the budget runs out while Lua runs: no timer can fire now */
    else if (now - w->resume_start >= w->cpu_allowance)
      c->cpu_killed = 1;
    else
      return;
  }
  lua_sethook(L, cpu_hook, LUA_MASKCOUNT, 1);
  if (c->budget_killed)
    luaL_error(L, "request budget of %f s spent (--request-timeout)", conn_budget(c));
  luaL_error(L, "CPU limit of %f s exceeded (the handler ran Lua without yielding)",
             w->cpu_allowance);
}

/* Lua's warnings (errors in __gc metamethods, warn()) go to the log; pieces are joined. */
static void warnf(void *ud, const char *msg, int tocont) {
  struct worker *w = ud;
  size_t n = strlen(w->warn_buf);
  if (n == 0 && !tocont && msg[0] == '@') return; /* control messages such as "@on" */
  snprintf(w->warn_buf + n, sizeof w->warn_buf - n, "%s", msg);
  if (tocont) return;
  slog_at(LOG_WARN, "worker %d: Lua warning: %s", w->id, w->warn_buf);
  w->warn_buf[0] = '\0';
}

static int panic(lua_State *L) {
  slog_at(LOG_ERROR, "unprotected Lua error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  return 0;
}

/* The request whose coroutine is L, for functions that park it; raises elsewhere. */
struct conn *lstate_current(lua_State *L, const char *what) {
  struct worker *w = lstate_worker;
  if (w == NULL || w->current == NULL || w->current->co != L)
    luaL_error(L, "%s can only be called from a request handler's own coroutine", what);
  return w->current;
}

/* Whether the running request has had its time slice and should let others in at its next
   read or write (set by the count hook, so even a request whose reads never wait is fair). */
int lstate_slice_over(lua_State *L, struct conn *c) {
  struct worker *w = c->w;
  return w->slice_over && w->current == c && L == c->co && lua_isyieldable(L);
}

/* Parks the request until the next loop iteration, then continues in k. */
int lstate_yield_slice(lua_State *L, struct conn *c, lua_KContext ctx, lua_KFunction k) {
  conn_resume_later(c);
  return lua_yieldk(L, 0, ctx, k);
}

/* Makes a state (ours or a caller's) ready to run requests on this worker. */
void lstate_prepare(struct worker *w, lua_State *L) {
  lstate_worker = w;
  if (w->srv->cfg.cpu_limit > 0) lua_sethook(L, cpu_hook, LUA_MASKCOUNT, HOOK_COUNT);
  w->mem_limit = (size_t)(w->srv->cfg.memory_limit * 1048576.0);
  w->cpu_allowance = w->srv->cfg.cpu_limit;
}

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

void lstate_unref(struct app *a) {
  if (a == NULL || --a->refs > 0) return;
  for (int i = 0; !a->owned && i < a->nidle; i++) /* a caller's state lives on */
    luaL_unref(a->L, LUA_REGISTRYINDEX, a->idle_ref[i]);
  for (int i = 0; !a->owned && i < NAME_SLOTS; i++) {
    if (a->names[i].ref > 0) luaL_unref(a->L, LUA_REGISTRYINDEX, a->names[i].ref);
    if (a->values[i].ref > 0) luaL_unref(a->L, LUA_REGISTRYINDEX, a->values[i].ref);
  }
  if (a->owned) lua_close(a->L);
  free(a);
}

/* An app around a state the caller owns (a function handler given to handle_requests). */
struct app *lstate_wrap(struct worker *w, lua_State *L, int handler_ref) {
  struct app *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->L = L;
  a->handler_ref = handler_ref;
  a->refs = 1;
  lstate_prepare(w, L);
  return a;
}

/* Tells the server which files the app came from, for --reload-on-change. */
static void collect_files(struct worker *w, lua_State *L, const char *app) {
  static const char finder[] = "local files = {}\n"
                               "for name in pairs(package.loaded) do\n"
                               "  if type(name) == 'string' then\n"
                               "    local f = package.searchpath(name, package.path)\n"
                               "    if f then files[#files + 1] = f end\n"
                               "  end\n"
                               "end\n"
                               "return files\n";
  if (luaL_loadbuffer(L, finder, sizeof finder - 1, "=files") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return;
  }
  int n = (int)luaL_len(L, -1);
  char **files = calloc((size_t)n + 1, sizeof *files);
  if (files == NULL) {
    lua_pop(L, 1);
    return;
  }
  files[0] = strdup(app);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    files[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  server_set_files(w->srv, files, n + 1);
}

/* --wsapi: replaces the value at idx (a WSAPI app) by require("scgi.wsapi").wrap_app(value). */
static int wrap_wsapi(lua_State *L, int idx, const char *app) {
  lua_pushcfunction(L, msghandler);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "scgi.wsapi");
  int rc = lua_pcall(L, 1, 1, -3);
  if (rc != LUA_OK) return rc;
  lua_getfield(L, -1, "wrap_app");
  lua_pushvalue(L, idx);
  lua_pushstring(L, app);
  rc = lua_pcall(L, 2, 1, -5);
  if (rc != LUA_OK) return rc;
  lua_replace(L, idx);
  lua_pop(L, 2);
  return LUA_OK;
}

/* Builds a state, loads the app file in it and keeps the handler it returns. */
struct app *lstate_new(struct worker *w, const char *app, char *err, size_t errlen) {
  struct app *a = calloc(1, sizeof *a);
  lua_State *L = a ? lua_newstate(lalloc, w) : NULL;
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state: out of memory");
    free(a);
    return NULL;
  }
  lua_atpanic(L, panic);
  lua_setwarnf(L, warnf, w);
  lstate_prepare(w, L);
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_scgi_core);
  lua_setfield(L, -2, "scgi.core");
  lua_pop(L, 1);
  lclient_open(L);
  set_paths(L, w->srv, app);
  lua_pushcfunction(L, msghandler);
  int base = lua_gettop(L);
  if (luaL_loadfile(L, app) != LUA_OK || lua_pcall(L, 0, LUA_MULTRET, base) != LUA_OK) {
    snprintf(err, errlen, "cannot load %s: %s", app, lua_tostring(L, -1));
    goto fail;
  }
  if (w->srv->cfg.wsapi && lua_gettop(L) > base && wrap_wsapi(L, base + 1, app) != LUA_OK) {
    snprintf(err, errlen, "%s is not a WSAPI application: %s", app, lua_tostring(L, -1));
    goto fail;
  }
  if (!lua_isfunction(L, base + 1)) {
    snprintf(err, errlen, "%s must return the handler function, but it returned %s", app,
             lua_gettop(L) == base ? "nothing" : luaL_typename(L, base + 1));
    goto fail;
  }
  lua_settop(L, base + 1);
  if (w->id == 0 && w->srv->cfg.reload_on_change) collect_files(w, L, app);
  a->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  if (w->srv->cfg.gc && strcmp(w->srv->cfg.gc, "generational") == 0)
    lua_gc(L, LUA_GCGEN, 0, 0);
  else
    lua_gc(L, LUA_GCINC, 0, 0, 0); /* see docs/design.md: GC */
  a->L = L;
  a->refs = 1;
  a->owned = 1;
  return a;
fail:
  lua_close(L);
  free(a);
  return NULL;
}

/* Ends the request's hold on its coroutine, client and app. */
void lstate_release(struct conn *c) {
  struct app *a = c->app;
  if (c->client) lclient_detach(c->client);
  c->client = NULL;
  luaL_unref(a->L, LUA_REGISTRYINDEX, c->client_ref);
  if (c->co_done && a->nidle < CO_POOL && lua_gettop(c->co) == 0) {
    a->idle[a->nidle] = c->co; /* a finished coroutine runs the next request */
    a->idle_ref[a->nidle++] = c->co_ref;
  } else {
    luaL_unref(a->L, LUA_REGISTRYINDEX, c->co_ref);
  }
  c->co_done = 0;
  c->client_ref = c->co_ref = LUA_NOREF;
  c->co = NULL;
  c->app = NULL;
  c->w->live--;
  lstate_unref(a);
}

/* Pushes a header's name or value through the app's cache slot for its position. A web server
   sends the same names in the same order every time, and many values repeat (SCGI, SERVER_NAME,
   HTTP_HOST, ...), so a slot keeps the Lua string last seen there and reuses it when the bytes
   match: a memcmp instead of hashing and interning the string again. */
static void push_cached(lua_State *co, struct str_slot *slot, const char *p, size_t len) {
  if (slot->ref > 0 && slot->len == len && memcmp(slot->bytes, p, len) == 0) {
    lua_rawgeti(co, LUA_REGISTRYINDEX, slot->ref);
    return;
  }
  lua_pushlstring(co, p, len);
  if (len > sizeof slot->bytes) return;
  if (slot->ref > 0) luaL_unref(co, LUA_REGISTRYINDEX, slot->ref);
  lua_pushvalue(co, -1);
  slot->ref = luaL_ref(co, LUA_REGISTRYINDEX);
  slot->len = len;
  memcpy(slot->bytes, p, len);
}

int lstate_start(struct conn *c, const struct scgi_header *h, size_t n) {
  struct worker *w = c->w;
  struct app *a = w->app;
  lua_State *L = a->L;
  if (!lua_checkstack(L, 2)) return -1;
  lua_State *co;
  if (a->nidle > 0) {
    co = a->idle[--a->nidle];
    c->co_ref = a->idle_ref[a->nidle];
  } else {
    co = lua_newthread(L);
    c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  c->co = co;
  c->app = a;
  a->refs++;
  w->live++;
  lua_rawgeti(co, LUA_REGISTRYINDEX, a->handler_ref);
  lua_createtable(co, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    if (i < NAME_SLOTS) {
      push_cached(co, &a->names[i], h[i].name, h[i].name_len);
      push_cached(co, &a->values[i], h[i].value, h[i].value_len);
    } else {
      lua_pushlstring(co, h[i].name, h[i].name_len);
      lua_pushlstring(co, h[i].value, h[i].value_len);
    }
    lua_rawset(co, -3);
  }
  c->client = lclient_push(co, c);
  lua_pushvalue(co, -1);
  c->client_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  lstate_run(c, 2);
  return 0;
}

static void close_thread(lua_State *co, lua_State *L) {
#if LUA_VERSION_RELEASE_NUM >= 50406
  lua_closethread(co, L);
#else
  (void)L;
  lua_resetthread(co);
#endif
}

/* Discards the request's coroutine (budget spent, worker stopping): its pending to-be-closed
   variables are closed, and the client is detached. */
void lstate_abort(struct conn *c) {
  lua_State *co = c->co;
  if (co == NULL) return;
  if (c->client) lclient_detach(c->client);
  c->client = NULL;
  /* pending __close handlers run now, under the CPU guard with at most a second */
  struct worker *w = c->w;
  double limit = w->srv->cfg.cpu_limit;
  w->current = c;
  w->resume_start = lstate_now();
  w->cpu_allowance = limit < 1 ? limit : 1;
  close_thread(co, c->app->L);
  w->cpu_allowance = limit;
  w->current = NULL;
  lstate_release(c);
}

/* The handler raised (or was stopped): log it with a traceback, answer 500 if nothing reached the
   socket, else cut the response short. */
static void request_failed(struct conn *c, int status) {
  struct worker *w = c->w;
  lua_State *L = c->app->L, *co = c->co;
  const char *msg = lua_tostring(co, -1);
  if (msg == NULL) {
    if (luaL_callmeta(co, -1, "__tostring") && lua_type(co, -1) == LUA_TSTRING)
      msg = lua_tostring(co, -1);
    else
      msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, -1));
  }
  luaL_traceback(L, co, msg, 0);
  if (c->budget_killed)
    slog_at(LOG_ERROR, "#%llu %s %s: request budget of %g s spent; the handler is stopped: %s",
            (unsigned long long)c->id, c->method[0] ? c->method : "-", c->uri ? c->uri : "-",
            conn_budget(c), lua_tostring(L, -1));
  else if (status == LUA_ERRMEM && w->mem_limit)
    slog_at(LOG_ERROR,
            "#%llu %s %s: handler error: not enough memory (limit %.1f MiB, in use %.1f MiB)",
            (unsigned long long)c->id, c->method[0] ? c->method : "-", c->uri ? c->uri : "-",
            (double)w->mem_limit / 1048576.0, (double)w->mem_used / 1048576.0);
  else
    slog_at(LOG_ERROR, "#%llu %s %s: handler error: %s", (unsigned long long)c->id,
            c->method[0] ? c->method : "-", c->uri ? c->uri : "-", lua_tostring(L, -1));
  lua_pop(L, 1);
  w->errors++;
  int budget = c->budget_killed;
  lstate_abort(c);
  if (c->state == CONN_RUN && c->bytes_out == 0) {
    c->out_len = c->out_off = 0;
    conn_respond_error(c, budget ? 504 : 500, NULL);
  } else if (c->state == CONN_RUN) {
    c->out_len = c->out_off = 0; /* part of the response is out: cut it short */
    conn_finish(c);
  } else if (c->state == CONN_CLOSED) {
    conn_close(c);
  }
}

void lstate_run(struct conn *c, int nargs) {
  struct worker *w = c->w;
  lua_State *co = c->co;
  int nres = 0;
  w->current = c;
  w->resume_start = lstate_now();
  w->slice_over = 0;
  w->mem_limited = 1;
  int st = lua_resume(co, c->app->L, nargs, &nres);
  w->mem_limited = 0;
  w->current = NULL;
  if (st == LUA_YIELD) {
    if (c->wait != WAIT_NONE) {
      return;
    } else {
      lua_pop(co, nres);
      lua_pushliteral(co, "the handler yielded outside of an scgi call (use scgi's functions to "
                          "wait, not coroutine.yield)");
      st = LUA_ERRRUN;
    }
  }
  if (st != LUA_OK) {
    request_failed(c, st);
    return;
  }
  lua_pop(co, nres);
  int wrote = c->bytes_out > 0 || c->out_len > 0;
  c->co_done = 1;
  lstate_release(c);
  w->served++;
  if (c->state == CONN_RUN && !wrote && !c->peer_gone)
    conn_respond_error(c, 500, "the handler returned without writing a response");
  else if (c->state == CONN_RUN)
    conn_finish(c);
  else if (c->state == CONN_CLOSED)
    conn_close(c);
}
