/* task.c: tasks: resuming a task's coroutine from the loop, its waits (the socket, a timer,
   something else), the coroutines it resumes through scgi's coroutine library, and the worker's
   runtime (its Lua state, reload). How a request starts and ends is in request.c. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "load.h"
#include "log.h"
#include "request.h"
#include "rt.h"
#include "server.h"
#include "spawn.h"
#include "task.h"
#include "upkeep.h"
#include "worker.h"

/* Per thread, not global: each worker thread runs exactly one worker. */
static __thread struct rt *tls_rt;

struct rt *rt_self(void) {
  struct rt *rt = tls_rt;
  return rt && rt->loader && !load_live(rt->loader) ? NULL : rt;
}

void rt_set_self(struct rt *rt) { tls_rt = rt; }

static struct task **extra(lua_State *co) { return (struct task **)lua_getextraspace(co); }

int task_holds(lua_State *co) { return *extra(co) != NULL; }

int task_holds_mine(lua_State *co) {
  return tls_rt && tls_rt->current && *extra(co) == tls_rt->current;
}

static void on_wake(struct ev_loop *loop, ev_timer *t, int revents);

void task_init(struct task *t, struct request *r, lua_State *co, int ref) {
  memset(t, 0, sizeof *t);
  t->co = co;
  t->co_ref = ref;
  t->req = r;
  t->chain = t->inline_chain;
  t->chain_nowait = t->inline_nowait;
  t->cap = TASK_CHAIN;
  t->chain[0] = co;
  t->chain_nowait[0] = 0;
  t->depth = 1;
  *extra(co) = t;
  ev_init(&t->wake, on_wake);
}

/* Forgets the task's coroutines (they are no longer part of a task). */
void task_unchain(struct task *t) {
  for (int i = 0; i < t->depth; i++)
    if (*extra(t->chain[i]) == t) *extra(t->chain[i]) = NULL;
  t->depth = 0;
  t->nowait = 0;
  if (t->chain != t->inline_chain) {
    free(t->chain);
    free(t->chain_nowait);
    t->chain = t->inline_chain;
    t->chain_nowait = t->inline_nowait;
    t->cap = TASK_CHAIN;
  }
}

static int chain_push(struct task *t, lua_State *co, int nowait) {
  if (t->depth == t->cap) {
    int cap = t->cap * 2;
    lua_State **c = malloc((size_t)cap * sizeof *c);
    unsigned char *n = malloc((size_t)cap);
    if (c == NULL || n == NULL) {
      free(c);
      free(n);
      return -1;
    }
    memcpy(c, t->chain, (size_t)t->depth * sizeof *c);
    memcpy(n, t->chain_nowait, (size_t)t->depth);
    if (t->chain != t->inline_chain) {
      free(t->chain);
      free(t->chain_nowait);
    }
    t->chain = c;
    t->chain_nowait = n;
    t->cap = cap;
  }
  t->chain[t->depth] = co;
  t->chain_nowait[t->depth++] = (unsigned char)nowait;
  t->nowait += nowait;
  *extra(co) = t;
  return 0;
}

static void chain_pop(struct task *t) {
  lua_State *co = t->chain[--t->depth];
  t->nowait -= t->chain_nowait[t->depth];
  *extra(co) = NULL;
}

/* Cancels what a parked task waits on. */
void task_cancel_wait(struct task *t) {
  struct request *r = t->req;
  if (t->wait == WAIT_CONN && r->conn) conn_unwait(r->conn);
  if (t->wait == WAIT_TIMER) ev_timer_stop(r->rt->w->loop, &t->wake);
  if (t->wait == WAIT_OTHER && t->cancel) t->cancel(t->cancel_arg);
  t->cancel = NULL;
  t->wait = WAIT_NONE;
}

/* Resumes the task's coroutine (and, through it, the coroutine it waits in). */
void task_run(struct task *t, int nargs) {
  struct request *r = t->req;
  struct rt *rt = r->rt;
  int nres = 0;
  t->wait = WAIT_NONE;
  rt->current = t;
  rt->running = t->co;
  atomic_store_explicit(&rt->request_ns, (uint64_t)(r->start * 1e9), memory_order_relaxed);
  guard_begin(rt, rt->w->srv->cfg.cpu_limit, r->deadline);
  rt->mem.limited = 1;
  int st = lua_resume(t->co, r->app->L, nargs, &nres);
  rt->mem.limited = 0;
  guard_end(rt);
  rt->current = NULL;
  if (st == LUA_YIELD && t->wait != WAIT_NONE && !r->cpu_killed && !r->budget_killed)
    return; /* parked */
  request_task_ended(t, st, nres);
}

const char *task_waiting_on(const struct task *t) {
  struct conn *c = t->req->conn;
  switch (t->wait) {
  case WAIT_CONN:
    return c && (c->io.events & EV_READ) ? "reading the request body" : "writing the response";
  case WAIT_TIMER:
    return ev_timer_remaining(t->req->rt->w->loop, (ev_timer *)&t->wake) > 0 ? "scgi.sleep"
                                                                             : "its next turn";
  case WAIT_OTHER: return t->waiting_on ? t->waiting_on : "something";
  default: return "running Lua";
  }
}

/* The running task when L is the coroutine it runs now; raises otherwise. */
struct task *task_running(lua_State *L, const char *what) {
  struct rt *rt = tls_rt;
  if (rt == NULL || rt->current == NULL || rt->running != L)
    luaL_error(L, "%s can only be called from a request's handler (or a coroutine it resumed)",
               what);
  return rt->current;
}

/* Checks that the running task can wait here, and that it was not stopped meanwhile. */
void task_check_wait(lua_State *L, struct task *t) {
  if (t->req->rt->killed) luaL_error(L, "the request was stopped");
  if (!lua_isyieldable(L) || t->nowait > 0)
    luaL_error(L, "cannot wait across a C call here (a metamethod, an iterator called by C, or "
                  "a coroutine resumed by C)");
}

int task_wait_conn(lua_State *L, struct task *t, int events, lua_KContext ctx, lua_KFunction k) {
  struct request *r = t->req;
  task_check_wait(L, t);
  t->wait = WAIT_CONN;
  r->conn_waiter = t;
  conn_wait(r->conn, events);
  return lua_yieldk(L, 0, ctx, k);
}

int task_sleep(lua_State *L, struct task *t, double seconds, lua_KContext ctx, lua_KFunction k) {
  struct ev_loop *loop = t->req->rt->w->loop;
  task_check_wait(L, t);
  t->wait = WAIT_TIMER;
  ev_now_update(loop); /* the handler may have run for a while since the loop woke */
  ev_timer_set(&t->wake, seconds, 0.);
  ev_timer_start(loop, &t->wake);
  return lua_yieldk(L, 0, ctx, k);
}

int task_wait_other(lua_State *L, struct task *t, void (*cancel)(void *), void *arg,
                    const char *what, lua_KContext ctx, lua_KFunction k) {
  task_check_wait(L, t);
  t->wait = WAIT_OTHER;
  t->cancel = cancel;
  t->cancel_arg = arg;
  t->waiting_on = what;
  return lua_yieldk(L, 0, ctx, k);
}

int task_slice_over(lua_State *L) {
  struct rt *rt = tls_rt;
  return rt && atomic_load_explicit(&rt->slice_over, memory_order_relaxed) && rt->running == L &&
         rt->current && rt->current->nowait == 0 && lua_isyieldable(L);
}

int task_yield_slice(lua_State *L, struct task *t, lua_KContext ctx, lua_KFunction k) {
  task_check_wait(L, t);
  task_wake_later(t);
  return lua_yieldk(L, 0, ctx, k);
}

/* A task is woken: for a request, first notice whether the web server is still there. */
static void wake(struct task *t) {
  struct conn *c = t->req->conn;
  int nargs = t->nargs; /* a spawned task's first resume passes its arguments */
  if (c) conn_alive(c); /* so the next write knows the peer left */
  t->nargs = 0;
  task_run(t, nargs);
}

static void on_wake(struct ev_loop *loop, ev_timer *w, int revents) {
  struct task *t = (struct task *)((char *)w - offsetof(struct task, wake));
  (void)loop;
  (void)revents;
  if (t->wait != WAIT_TIMER) return;
  wake(t);
}

void task_wake(struct task *t) {
  if (t->wait != WAIT_OTHER) return;
  t->cancel = NULL;
  wake(t);
}

void task_wake_later(struct task *t) {
  t->cancel = NULL;
  t->wait = WAIT_TIMER;
  ev_timer_set(&t->wake, 0., 0.);
  ev_timer_start(t->req->rt->w->loop, &t->wake);
}

/* L resumes co: inside the running task, co joins the task's chain, so a wait in co parks the
   whole task and the next resume comes back to co; *parked tells the caller to yield too. */
int task_resume_coroutine(lua_State *L, lua_State *co, int nargs, int *nres, int *parked) {
  struct rt *rt = tls_rt;
  struct task *t = rt ? rt->current : NULL;
  *parked = 0;
  if (t == NULL || rt->running != L) return lua_resume(co, L, nargs, nres);
  int again = t->depth > 0 && t->chain[t->depth - 1] == co && *extra(co) == t;
  if (!again && chain_push(t, co, !lua_isyieldable(L)) < 0) {
    lua_pop(co, nargs); /* the error goes where the caller looks for it: on co */
    lua_pushliteral(L, "not enough memory");
    lua_xmove(L, co, 1);
    return LUA_ERRMEM;
  }
  rt->running = co;
  int st = lua_resume(co, L, nargs, nres);
  rt->running = L;
  if (st == LUA_YIELD && (t->wait != WAIT_NONE || rt->killed)) { /* a wait, or the guard */
    *parked = 1;
    if (rt->killed && !lua_isyieldable(L)) return guard_raise(L); /* no yield can pass here */
    return st;
  }
  if (t->depth > 1 && t->chain[t->depth - 1] == co) chain_pop(t);
  return st;
}

/* ---- the worker's runtime ---- */

static void on_file(const char *path, void *ud) { server_watch(((struct rt *)ud)->w->srv, path); }

static void prepare(lua_State *L, void *ud) { ((struct rt *)ud)->w->srv->bindings->prepare(L); }

int rt_open(struct worker *w, char *err, size_t errlen) {
  struct server *s = w->srv;
  struct rt *rt = calloc(1, sizeof *rt);
  if (rt == NULL) {
    snprintf(err, errlen, "worker %d: out of memory", w->id);
    return -1;
  }
  rt->w = w;
  rt->mem.limit = (size_t)(s->cfg.memory_limit * 1048576.0);
  rt->push_args = s->bindings->push_args;
  rt->env = (struct app_env){.worker_id = w->id,
                             .mem = &rt->mem,
                             .lua_path = s->lua_path,
                             .lua_cpath = s->lua_cpath,
                             .lua_path_prefix = s->lua_path_prefix,
                             .wsapi = s->cfg.wsapi,
                             .generational = s->cfg.gc == GC_GENERATIONAL,
                             .prepare = prepare,
                             .on_file = s->cfg.reload_on_change ? on_file : NULL,
                             .ud = rt};
  w->rt = rt;
  tls_rt = rt;
  guard_install();
  if (s->fn_L) {
    *extra(s->fn_L) = NULL;
    rt->app = app_wrap(&rt->env, s->fn_L, s->fn_ref);
    if (rt->app == NULL) snprintf(err, errlen, "worker %d: out of memory", w->id);
  } else { /* on a thread of its own, as a reload, under --load-timeout */
    struct load *l = load_start(rt, LOAD_START, NULL, "start", err, errlen);
    rt->app = l ? load_wait(l, err, errlen) : NULL;
  }
  if (rt->app == NULL) {
    guard_detach(rt);
    tls_rt = NULL;
    rt_free(w);
    return -1;
  }
  stat_set(&w->st->lua_memory, rt->mem.used);
  upkeep_start(rt);
  if (!s->fn_L) load_adopt_timers(rt, rt->app);
  return 0;
}

/* Starts building a new state for new requests, on a thread of its own: a reload reads the
   files, a recycle runs the sources the running app loaded. The worker serves on meanwhile; a
   reload asked while a load runs follows it. 0, or -1 with the reason in err. */
int rt_load_new(struct worker *w, int recycle, const char *why, char *err, size_t errlen) {
  struct rt *rt = w->rt;
  if (rt->load) {
    rt->load_again |= !recycle;
    return 0;
  }
  if (load_stuck(rt)) {
    snprintf(err, errlen, "an earlier load is still stuck in a C call (one per worker at a time)");
    return -1;
  }
  rt->load = load_start(rt, recycle ? LOAD_RECYCLE : LOAD_RELOAD, recycle ? rt->app->code : NULL,
                        why, err, errlen);
  return rt->load ? 0 : -1;
}

static void reloaded(struct worker *w, int ok, const char *err) {
  stat_add(ok ? &w->st->reloads : &w->st->reload_failures, 1);
  stat_set(&w->srv->stats->last_reload_ms, stats_wall_ms());
  stat_set(&w->srv->stats->last_reload_ok, (uint64_t)ok);
  if (ok)
    slog("worker %d: reloaded %s", w->id, w->srv->cfg.app);
  else
    slog_at(LOG_ERROR, "worker %d: reload failed, the running app goes on serving: %s", w->id, err);
}

void rt_reload(struct worker *w) {
  char err[1024];
  if (w->srv->fn_L) {
    if (w->id == 0) slog("reload: a function handler cannot be reloaded; serving on");
    return;
  }
  if (w->rt->load) slog("worker %d: the reload follows the load under way", w->id);
  if (rt_load_new(w, 0, "reload", err, sizeof err) < 0) reloaded(w, 0, err);
}

/* The new app serves new requests; the old one closes when its last request ends, and its
   pending timers run at once, premature. */
static void swap_in(struct rt *rt, struct app *a) {
  struct app *old = rt->app;
  rt->app = a;
  upkeep_new_app(rt);
  load_adopt_timers(rt, a);
  timers_premature(rt, old);
  app_unref(old);
  stat_set(&rt->w->st->lua_memory, rt->mem.used);
}

void rt_load_done(struct rt *rt, struct app *a, const char *err, enum load_kind kind,
                  const char *why, int timed_out) {
  struct worker *w = rt->w;
  if (timed_out) stat_add(&w->st->load_timeouts, 1);
  if (atomic_load(&w->stop)) { /* stopping: the new app would serve nobody */
    if (a) app_unref(a);
    return;
  }
  if (a) swap_in(rt, a);
  if (kind == LOAD_RELOAD)
    reloaded(w, a != NULL, err);
  else
    upkeep_recycled(rt, why, a ? NULL : err);
  if (rt->load_again && rt->load == NULL) {
    rt->load_again = 0;
    rt_reload(w);
  }
}

unsigned rt_live(const struct worker *w) { return w->rt ? w->rt->nlive + w->rt->ntimers : 0; }

void rt_stopping(struct worker *w) {
  if (w->rt) timers_premature(w->rt, NULL);
}

unsigned long long rt_busy_since(const struct worker *w, unsigned long long now_ns) {
  struct rt *rt = w->rt;
  uint64_t start = rt ? atomic_load_explicit(&rt->resume_ns, memory_order_relaxed) : 0;
  return start && now_ns > start ? now_ns - start : 0;
}

void rt_close(struct worker *w) {
  struct rt *rt = w->rt;
  if (rt == NULL || rt->detached) return;
  load_cancel(rt);
  rt_abandon(w);
  upkeep_stop(rt);
  app_unref(rt->app);
  rt->app = NULL;
  guard_detach(rt);
  tls_rt = NULL;
}
