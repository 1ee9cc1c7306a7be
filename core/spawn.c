/* spawn.c: the tasks a request spawns (scgi.spawn, wait, kill), which share its budget and end
   with it, and timers (scgi.timer, every): functions that run later in jobs of their own, with
   the whole cooperative API, outside any request. */
#include "spawn.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbind.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "task.h"
#include "worker.h"

/* ---- spawned tasks ---- */

static void link_task(struct request *r, struct task *t) {
  t->next = r->spawned;
  if (r->spawned) r->spawned->prev = t;
  r->spawned = t;
  r->nspawned++;
  stat_set(&r->rt->w->st->tasks, ++r->rt->nspawned);
}

static void unlink_task(struct request *r, struct task *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    r->spawned = t->next;
  if (t->next) t->next->prev = t->prev;
  r->nspawned--;
  stat_set(&r->rt->w->st->tasks, --r->rt->nspawned);
}

struct task *spawn_task(lua_State *L, struct task *parent, int nargs, const char *mt) {
  struct request *r = parent->req;
  /* everything that can raise comes first, while nothing is held */
  struct task_box *b = (struct task_box *)lbind_new(L, mt, sizeof *b, 1);
  lua_insert(L, -nargs - 2); /* below the function and its arguments */
  lua_pushvalue(L, -nargs - 2);
  int box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int ref;
  lua_State *co = app_thread(r->app, &ref);
  int room = lua_checkstack(co, nargs + 1);
  struct task *t = room ? calloc(1, sizeof *t) : NULL;
  if (t == NULL) {
    app_release_thread(r->app, co, ref, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, box_ref);
    lua_pushstring(L, room ? "not enough memory" : "too many arguments");
    return NULL;
  }
  task_init(t, r, co, ref);
  lua_xmove(L, co, nargs + 1); /* the function and its arguments; the box is on top now */
  t->nargs = nargs;
  b->t = t;
  t->box = b;
  t->box_ref = box_ref;
  link_task(r, t);
  task_wake_later(t); /* the first resume passes t->nargs (task_run takes them from there) */
  return t;
}

static void wait_cancel(void *arg) {
  struct task *t = arg;
  t->waiter = NULL;
}

int spawn_wait(lua_State *L, struct task *me, struct task *t, lua_KContext ctx, lua_KFunction k) {
  if (t->waiter && t->waiter != me) return luaL_error(L, "another task waits for that task");
  task_check_wait(L, me);
  t->waiter = me;
  return task_wait_other(L, me, wait_cancel, t, "a task (scgi.wait)", ctx, k);
}

/* Stores the task's results (or false and its error) in its box, wakes who waits for it, and
   lets the task go. */
static void settle(struct task *t, int ok, int nres) {
  struct request *r = t->req;
  lua_State *co = t->co, *L = r->app->L;
  struct task *waiter = t->waiter;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->box_ref);
  lua_createtable(L, nres + 1, 1);
  lua_pushboolean(L, ok);
  lua_rawseti(L, -2, 1);
  for (int i = nres; i >= 1; i--) { /* from the top: nothing is pushed on co */
    lua_xmove(co, L, 1);
    lua_rawseti(L, -2, i + 1);
  }
  if (!ok) { /* the error stays on co's top: its to-be-closed variables get it */
    lua_rawgeti(L, -1, 2);
    lua_xmove(L, co, 1);
  }
  lua_pushinteger(L, nres + 1);
  lua_setfield(L, -2, "n");
  lua_setiuservalue(L, -2, 1);
  t->box->t = NULL;
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->box_ref);
  unlink_task(r, t);
  if (waiter && waiter->wait == WAIT_OTHER && waiter->cancel_arg == t) task_wake_later(waiter);
}

void spawn_ended(struct task *t, int st, int nres) {
  struct request *r = t->req;
  lua_State *co = t->co, *L = r->app->L;
  int ok = st == LUA_OK && !r->cpu_killed && !r->budget_killed;
  if (ok) {
    settle(t, 1, nres);
    lua_settop(co, 0);
    request_close_task(t, 1);
  } else {
    if (st == LUA_YIELD)
      lua_pushstring(co, r->budget_killed ? "request budget spent (--request-timeout)"
                         : r->cpu_killed  ? "CPU limit exceeded (the task ran Lua without yielding)"
                                          : "the task yielded outside of an scgi call");
    int top = lua_gettop(L);
    const char *msg = request_describe_error(r, co, st);
    slog_at(LOG_ERROR, "#%llu %s %s: task error: %s", (unsigned long long)r->id,
            r->method[0] ? r->method : "-", request_uri(r), msg);
    lua_settop(L, top);
    settle(t, 0, 1); /* the error value */
    request_close_task(t, 0);
  }
  free(t);
  if (r->budget_killed) {
    request_stop(r, END_BUDGET); /* the budget is the whole request's */
    return;
  }
  r->cpu_killed = 0; /* that task's CPU, not the request's */
  if (r->finished && r->nspawned == 0 && r->returned)
    request_tasks_done(r);
  else
    request_maybe_free(r);
}

/* Ends a task that is not running: its waits are cancelled, its coroutine closed. */
static void stop_task(struct task *t, const char *why) {
  task_cancel_wait(t);
  lua_settop(t->co, 0);
  lua_pushstring(t->co, why);
  settle(t, 0, 1);
  request_close_task(t, 0);
  free(t);
}

void spawn_kill(struct task *t) {
  struct request *r = t->req;
  stop_task(t, "killed");
  if (r->finished && r->nspawned == 0 && r->returned) request_tasks_done(r);
}

void spawn_stop_all(struct request *r) {
  while (r->spawned)
    stop_task(r->spawned, "stopped: its request ended");
}

/* ---- timers ---- */

struct timer {
  ev_timer w; /* first member */
  struct rt *rt;
  struct app *app; /* holds a reference */
  struct timer *prev, *next;
  int ref; /* registry: { f, args... } */
  int nargs;
  double interval; /* every: the period; 0: once */
  int premature;
  char where[96]; /* the function's source, for the logs */
};

static void timer_unlink(struct timer *tm) {
  struct rt *rt = tm->rt;
  if (tm->prev)
    tm->prev->next = tm->next;
  else
    rt->timers = tm->next;
  if (tm->next) tm->next->prev = tm->prev;
  tm->prev = tm->next = NULL;
  stat_set(&rt->w->st->timers, --rt->ntimers);
}

static void timer_free(struct timer *tm) {
  ev_timer_stop(tm->rt->w->loop, &tm->w);
  luaL_unref(tm->app->L, LUA_REGISTRYINDEX, tm->ref);
  app_unref(tm->app);
  free(tm);
}

/* The first frame of a timer's job: f(premature, args...). */
static int timer_body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* Inside the job's coroutine: { f, args... } (1), their count (2) and premature (3) become
   f(premature, args...); too many arguments for the stack is that run's error. */
static int timer_body(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE); /* debug.getinfo(level, "f") hands it out as a function */
  lua_Integer count = luaL_checkinteger(L, 2);
  luaL_argcheck(L, count >= 0 && count < 1000000000, 2, "bad count");
  int n = (int)count;
  luaL_checkstack(L, n + 2, "too many arguments");
  lua_rawgeti(L, 1, 1);
  lua_pushvalue(L, 3);
  for (int i = 1; i <= n; i++)
    lua_rawgeti(L, 1, i + 1);
  lua_callk(L, n + 1, 0, 0, timer_body_k);
  return 0;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  struct timer *tm = (struct timer *)w;
  struct rt *rt = tm->rt;
  struct server *s = rt->w->srv;
  (void)loop;
  (void)revents;
  double budget = s->cfg.timer_timeout;
  struct request *r = request_new(rt, tm->app, atomic_fetch_add(&s->stats->next_id, 1), 0);
  if (r == NULL) {
    slog_at(LOG_ERROR, "worker %d: timer %s dropped: out of memory", rt->w->id, tm->where);
    timer_unlink(tm);
    timer_free(tm);
    return;
  }
  r->deadline = budget > 0 ? r->start + budget : 0; /* from its start: the logs say the budget */
  snprintf(r->method, sizeof r->method, "TIMER");
  r->uri = strdup(tm->where);
  r->timer = tm;
  r->premature = tm->premature != 0;
  lua_State *co = r->main.co; /* a fresh or finished coroutine: room for these few values */
  lua_rawgeti(co, LUA_REGISTRYINDEX, tm->ref);
  lua_pushinteger(co, tm->nargs);
  lua_pushboolean(co, tm->premature);
  request_start(r, timer_body, 3);
}

int timer_add(struct rt *rt, struct app *app, lua_State *L, double delay, double interval,
              int nargs, const char **why) {
  struct worker *w = rt->w;
  if (atomic_load(&w->stop)) {
    *why = "the worker is stopping";
    return -1;
  }
  if (rt->ntimers >= (unsigned)w->srv->cfg.max_timers) {
    *why = "too many pending timers (--max-timers)";
    return -1;
  }
  struct timer *tm = calloc(1, sizeof *tm);
  if (tm == NULL) {
    *why = "not enough memory";
    return -1;
  }
  lua_Debug ar;
  lua_pushvalue(L, -nargs - 1);
  if (lua_getinfo(L, ">S", &ar))
    snprintf(tm->where, sizeof tm->where, "%s:%d", ar.short_src, ar.linedefined);
  lua_createtable(L, nargs + 1, 0);
  lua_insert(L, -nargs - 2);
  for (int i = nargs + 1; i >= 1; i--)
    lua_rawseti(L, -i - 1, i);
  tm->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  tm->rt = rt;
  tm->app = app;
  app_ref(app);
  tm->nargs = nargs;
  tm->interval = interval;
  tm->next = rt->timers;
  if (rt->timers) rt->timers->prev = tm;
  rt->timers = tm;
  stat_set(&w->st->timers, ++rt->ntimers);
  ev_now_update(w->loop);
  ev_timer_init(&tm->w, on_timer, delay, 0.);
  ev_timer_start(w->loop, &tm->w);
  return 0;
}

void timer_job_done(struct request *r) {
  struct timer *tm = r->timer;
  struct rt *rt = r->rt;
  r->timer = NULL;
  if (tm->interval > 0 && !tm->premature && !atomic_load(&rt->w->stop) && tm->app == rt->app) {
    ev_timer_set(&tm->w, tm->interval, 0.);
    ev_timer_start(rt->w->loop, &tm->w);
    return;
  }
  timer_unlink(tm);
  timer_free(tm);
}

void timers_premature(struct rt *rt, struct app *app) {
  for (struct timer *tm = rt->timers; tm; tm = tm->next) {
    if ((app && tm->app != app) || !ev_is_active(&tm->w)) continue; /* a running job: later */
    ev_timer_stop(rt->w->loop, &tm->w);
    tm->premature = 1;
    ev_timer_set(&tm->w, 0., 0.);
    ev_timer_start(rt->w->loop, &tm->w);
  }
}

static void drop(struct rt *rt, struct app *app) {
  for (struct timer *tm = rt->timers, *next; tm; tm = next) {
    next = tm->next;
    if ((app && tm->app != app) || !ev_is_active(&tm->w)) continue; /* a job owns it */
    timer_unlink(tm);
    timer_free(tm);
  }
}

void timers_discard(struct rt *rt) { drop(rt, NULL); }

void timers_drop(struct rt *rt, struct app *app) { drop(rt, app); }
