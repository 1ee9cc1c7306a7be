/* load.c: loading the app file on a thread of its own, at start, on reload and on recycling. The
   new state is built there (a Lua state is tied to no thread, only never used by two at once)
   while the worker answers with its running app, and handed over on the worker's loop
   (ev_async). --load-timeout bounds it: a count hook looks at the clock while the file's Lua runs
   and raises past the limit (at every instruction, so a pcall cannot keep it going); a load
   stuck in a C call past the limit and a second is abandoned: its thread finishes alone and
   frees its state when the call returns, and the worker starts no other load until then, so at
   most one abandoned thread and state per worker exist at a time. Timers the file sets are
   kept in the loading state and set on the worker's loop once the app serves. */
#include "load.h"

#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "clock.h"
#include "log.h"
#include "server.h"
#include "spawn.h"
#include "task.h"
#include "worker.h"

#define LOAD_SLACK 1.0  /* seconds past the limit: a load still going is stuck in a C call */
#define HOOK_COUNT 1000 /* instructions between two looks at the clock while a file loads */
#define TIMERS_KEY "scgi.load_timers"

struct load {
  struct rt shadow; /* rt_self() on the loader's thread: the worker's server, no task */
  struct rt *rt;    /* the worker's runtime */
  enum load_kind kind;
  struct app_env env;
  char *path, why[128], err[1024];
  double timeout;
  _Atomic uint64_t deadline_ns; /* its Lua is stopped past it (1: the worker stops) */
  struct app *app;              /* the result */
  int timed_out;                /* the hook stopped it past --load-timeout */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, abandoned, finished, refs; /* under mu */
  atomic_int gone;                     /* abandoned: rt_self() is NULL on its thread */
  struct ev_loop *loop;                /* a reload's or recycle's: the worker's */
  ev_async async;
  ev_timer timer;
};

static __thread struct load *tls_load; /* the load this thread runs */

int load_live(const struct load *l) {
  return !atomic_load_explicit(&l->gone, memory_order_relaxed);
}

static void load_free(struct load *l) {
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  app_code_unref(l->env.code);
  free(l->path);
  free(l);
}

/* Drops one of the two references to an abandoned load (the worker's, its thread's). */
static void release(struct load *l) {
  pthread_mutex_lock(&l->mu);
  int last = --l->refs == 0;
  pthread_mutex_unlock(&l->mu);
  if (last) load_free(l);
}

/* While the file loads: raises once the deadline is past, then at every instruction. */
static void load_hook(lua_State *L, lua_Debug *ar) {
  struct load *l = tls_load;
  (void)ar;
  if (l == NULL) { /* a coroutine made at load time, now run by the worker */
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  uint64_t deadline = atomic_load_explicit(&l->deadline_ns, memory_order_relaxed);
  if (clock_ns() < deadline) return;
  lua_sethook(L, load_hook, LUA_MASKCOUNT, 1);
  if (deadline == 1) luaL_error(L, "the worker is stopping");
  l->timed_out = 1;
  luaL_error(L, "loading took longer than --load-timeout (%f s)", (lua_Number)l->timeout);
}

/* app_env.loading: the hook is on while the file runs; timers set meanwhile belong to a. */
static void loading(struct app *a, void *ud) {
  struct load *l = tls_load;
  (void)ud;
  if (l == NULL) return;
  if (a) lua_sethook(a->L, load_hook, LUA_MASKCOUNT, HOOK_COUNT);
  if (a == NULL && l->shadow.loading) lua_sethook(l->shadow.loading->L, NULL, 0, 0);
  l->shadow.loading = a;
}

static void *loader_main(void *arg) {
  struct load *l = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  log_attach(l->shadow.w->srv->log);
  tls_load = l;
  rt_set_self(&l->shadow);
  l->app = app_new(&l->env, l->path, l->err, sizeof l->err);
  rt_set_self(NULL);
  tls_load = NULL;
  pthread_mutex_lock(&l->mu);
  if (!l->abandoned) {
    l->done = 1;
    pthread_cond_broadcast(&l->cv);
    if (l->loop) ev_async_send(l->loop, &l->async);
    pthread_mutex_unlock(&l->mu);
    return NULL; /* the worker joins this thread and takes the app */
  }
  pthread_mutex_unlock(&l->mu);
  log_attach(NULL); /* the server may be gone: what is left goes to stderr */
  app_unref(l->app);
  pthread_mutex_lock(&l->mu);
  l->finished = 1;
  pthread_mutex_unlock(&l->mu);
  release(l);
  return NULL;
}

/* On the worker: the thread ended; its app (counted in the worker's memory) goes to task.c. */
static void finish(struct load *l) {
  struct rt *rt = l->rt;
  ev_async_stop(l->loop, &l->async);
  ev_timer_stop(l->loop, &l->timer);
  pthread_join(l->thread, NULL);
  if (l->app) app_adopt(l->app, &rt->mem);
  rt->load = NULL;
  rt_load_done(rt, l->app, l->err, l->kind, l->why, l->timed_out);
  load_free(l);
}

static void on_async(struct ev_loop *loop, ev_async *a, int revents) {
  struct load *l = (struct load *)((char *)a - offsetof(struct load, async));
  (void)loop;
  (void)revents;
  pthread_mutex_lock(&l->mu);
  int done = l->done;
  pthread_mutex_unlock(&l->mu);
  if (done) finish(l);
}

/* Marks l abandoned unless it is done; 1 if it was. */
static int abandon(struct load *l) {
  pthread_mutex_lock(&l->mu);
  int done = l->done;
  if (!done) {
    l->abandoned = 1;
    atomic_store(&l->gone, 1);
  }
  pthread_mutex_unlock(&l->mu);
  if (!done) pthread_detach(l->thread);
  return done;
}

static void stuck_message(struct load *l, char *err, size_t errlen) {
  snprintf(err, errlen,
           "cannot load %s: it did not end within --load-timeout (%g s) and %g s more: stuck in "
           "a C call (abandoned: its thread ends when the call returns)",
           l->path, l->timeout, LOAD_SLACK);
}

/* The limit and a second are past: a load still going is stuck in a C call. */
static void on_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  struct load *l = (struct load *)((char *)t - offsetof(struct load, timer));
  char err[1024];
  (void)revents;
  if (abandon(l)) {
    finish(l);
    return;
  }
  ev_async_stop(loop, &l->async);
  struct rt *rt = l->rt;
  rt->load = NULL;
  rt->stuck = l; /* the worker keeps its reference: no new load while it is stuck */
  stuck_message(l, err, sizeof err);
  rt_load_done(rt, NULL, err, l->kind, l->why, 1);
}

struct load *load_start(struct rt *rt, enum load_kind kind, struct app_code *code, const char *why,
                        char *err, size_t errlen) {
  struct worker *w = rt->w;
  struct load *l = calloc(1, sizeof *l);
  pthread_condattr_t ca;
  if (l == NULL || (l->path = strdup(w->srv->cfg.app)) == NULL) {
    free(l);
    snprintf(err, errlen, "worker %d: out of memory", w->id);
    return NULL;
  }
  l->shadow.w = w;
  l->shadow.loader = l;
  l->shadow.mem.limit = rt->mem.limit;
  l->rt = rt;
  l->kind = kind;
  snprintf(l->why, sizeof l->why, "%s", why);
  l->env = rt->env;
  l->env.mem = &l->shadow.mem;
  l->env.code = code;
  app_code_ref(code);
  l->env.run = NULL;
  l->env.loading = loading;
  l->env.failed = NULL;
  l->timeout = w->srv->cfg.load_timeout;
  atomic_init(&l->deadline_ns, clock_ns() + (uint64_t)(l->timeout * 1e9));
  l->refs = 2;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&l->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&l->mu, NULL);
  if (kind != LOAD_START) {
    l->loop = w->loop;
    ev_async_init(&l->async, on_async);
    ev_async_start(l->loop, &l->async);
    ev_timer_init(&l->timer, on_timer, l->timeout + LOAD_SLACK, 0.);
    ev_timer_start(l->loop, &l->timer);
  }
  if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
    if (l->loop) {
      ev_async_stop(l->loop, &l->async);
      ev_timer_stop(l->loop, &l->timer);
    }
    snprintf(err, errlen, "worker %d: cannot start a thread to load the app: %s", w->id,
             strerror(errno));
    load_free(l);
    return NULL;
  }
  return l;
}

/* Waits until l is done or the monotonic time `until` (ns); 1 if it is done. */
static int wait_until(struct load *l, uint64_t until) {
  struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
                        .tv_nsec = (long)(until % 1000000000u)};
  int rc = 0;
  pthread_mutex_lock(&l->mu);
  while (!l->done && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&l->cv, &l->mu, &ts);
  int done = l->done;
  pthread_mutex_unlock(&l->mu);
  return done;
}

struct app *load_wait(struct load *l, char *err, size_t errlen) {
  uint64_t until = atomic_load(&l->deadline_ns) + (uint64_t)(LOAD_SLACK * 1e9);
  if (!wait_until(l, until) && !abandon(l)) {
    stuck_message(l, err, errlen);
    release(l);
    return NULL;
  }
  pthread_join(l->thread, NULL);
  struct app *a = l->app;
  if (a)
    app_adopt(a, &l->rt->mem);
  else
    snprintf(err, errlen, "%s", l->err);
  load_free(l);
  return a;
}

void load_cancel(struct rt *rt) {
  struct load *l = rt->load;
  if (l) {
    rt->load = NULL;
    ev_async_stop(l->loop, &l->async);
    ev_timer_stop(l->loop, &l->timer);
    atomic_store(&l->deadline_ns, 1); /* its Lua stops at the hook's next look */
    if (!wait_until(l, clock_ns() + (uint64_t)(LOAD_SLACK * 1e9)) && !abandon(l)) {
      release(l);
    } else {
      pthread_join(l->thread, NULL);
      if (l->app) {
        app_adopt(l->app, &rt->mem);
        app_unref(l->app);
      }
      load_free(l);
    }
  }
  if (rt->stuck) release(rt->stuck);
  rt->stuck = NULL;
}

int load_stuck(struct rt *rt) {
  struct load *l = rt->stuck;
  if (l == NULL) return 0;
  pthread_mutex_lock(&l->mu);
  int finished = l->finished;
  pthread_mutex_unlock(&l->mu);
  if (!finished) return 1;
  rt->stuck = NULL;
  release(l);
  return 0;
}

int load_defer_timer(lua_State *L, double delay, double interval) {
  struct rt *rt = rt_self();
  int nargs = lua_gettop(L) - 2;
  if (lua_getfield(L, LUA_REGISTRYINDEX, TIMERS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, TIMERS_KEY);
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  if (rt == NULL || n >= rt->w->srv->cfg.max_timers) {
    luaL_pushfail(L);
    lua_pushstring(L, rt ? "too many pending timers (--max-timers)" : "the load was abandoned");
    return 2;
  }
  lua_createtable(L, nargs + 1, 3);
  for (int i = 2; i <= nargs + 2; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  lua_pushinteger(L, nargs);
  lua_setfield(L, -2, "n");
  lua_pushnumber(L, delay);
  lua_setfield(L, -2, "delay");
  lua_pushnumber(L, interval);
  lua_setfield(L, -2, "interval");
  lua_rawseti(L, -2, n + 1);
  lua_pushboolean(L, 1);
  return 1;
}

void load_adopt_timers(struct rt *rt, struct app *a) {
  lua_State *L = a->L;
  int top = lua_gettop(L);
  if (lua_getfield(L, LUA_REGISTRYINDEX, TIMERS_KEY) != LUA_TTABLE) {
    lua_settop(L, top);
    return;
  }
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, TIMERS_KEY);
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    const char *why = "not enough memory";
    lua_rawgeti(L, top + 1, i);
    int e = lua_gettop(L);
    lua_getfield(L, e, "n");
    lua_getfield(L, e, "delay");
    lua_getfield(L, e, "interval");
    int nargs = (int)lua_tointeger(L, -3);
    double delay = lua_tonumber(L, -2), interval = lua_tonumber(L, -1);
    lua_settop(L, e);
    if (lua_checkstack(L, nargs + 8)) {
      for (int j = 1; j <= nargs + 1; j++)
        lua_rawgeti(L, e, j);
      if (timer_add(rt, a, L, delay, interval, nargs, &why) == 0) why = NULL;
    }
    if (why) slog_at(LOG_ERROR, "worker %d: a timer the app set while loading: %s", rt->w->id, why);
    lua_settop(L, e - 1);
  }
  lua_settop(L, top);
}
