/* request.c: a request: starting the handler's task for a parsed connection (or a timer's
   function), its budget, the one policy for how its response ends (request_end), stopping it,
   and freeing it once all its tasks are done. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "request.h"
#include "rt.h"
#include "server.h"
#include "spawn.h"
#include "upkeep.h"
#include "worker.h"

static const char *method_of(const struct request *r) { return r->method[0] ? r->method : "-"; }

const char *request_uri(const struct request *r) {
  const char *u = r->conn ? r->conn->rec.uri : r->uri;
  return u ? u : "-";
}

static const char *uri_of(const struct request *r) { return request_uri(r); }

/* Detaches the client box: the client object then raises "closed scgi client". */
static void detach_client(struct request *r) {
  if (r->client) r->client->r = NULL;
  r->client = NULL;
}

/* The one place that decides how a response ends: the status the server answers itself (500
   when the handler wrote nothing or failed, 504 after the budget, 503 when the worker stops),
   what is logged, and whether what was written is sent or cut. detail is the error (with its
   traceback) for END_ERROR. */
const char *request_budget_text(const struct request *r, char *buf, size_t len) {
  double budget = round((r->deadline - r->start) * 1000.0) / 1000.0; /* as the option said it */
  snprintf(buf, len, "request budget of %g s spent (%s)", budget,
           strcmp(r->method, "TIMER") == 0 ? "--timer-timeout" : "--request-timeout");
  return buf;
}

static void request_end(struct request *r, enum request_end why, const char *detail) {
  char spent[96];
  struct conn *c = r->conn;
  struct worker *w = r->rt->w;
  detach_client(r);
  switch (why) {
  case END_ERROR:
    stat_add(&w->st->errors, 1);
    if (r->budget_killed) {
      stat_add(&w->st->timeout_stops, 1);
      slog_at(LOG_ERROR, "#%llu %s %s: %s; the handler is stopped: %s", (unsigned long long)r->id,
              method_of(r), uri_of(r), request_budget_text(r, spent, sizeof spent), detail);
    } else {
      if (r->cpu_killed) stat_add(&w->st->cpu_stops, 1);
      slog_at(LOG_ERROR, "#%llu %s %s: handler error: %s", (unsigned long long)r->id, method_of(r),
              uri_of(r), detail);
    }
    break;
  case END_BUDGET:
    stat_add(&w->st->errors, 1);
    stat_add(&w->st->timeout_stops, 1);
    slog_at(LOG_ERROR, "#%llu %s %s: %s; the handler is stopped", (unsigned long long)r->id,
            method_of(r), uri_of(r), request_budget_text(r, spent, sizeof spent));
    break;
  case END_STOPPED:
    slog_at(LOG_WARN, "#%llu %s %s: the grace period is over: the request is stopped",
            (unsigned long long)r->id, method_of(r), uri_of(r));
    break;
  default: break;
  }
  if (c == NULL) return; /* the response had ended already */
  int going_on = !r->finished || r->nspawned > 0;
  if ((going_on || why != END_RETURNED) && c->rec.uri)
    r->uri = strdup(c->rec.uri);     /* for the log lines to come, without the connection */
  if (going_on && r->deadline > 0) { /* the tasks go on: the budget is the request's now */
    double left = r->deadline - clock_now();
    ev_timer_set(&r->budget, left > 0 ? left : 0., 0.);
    ev_timer_start(r->rt->w->loop, &r->budget);
  }
  struct task *waiter = r->conn_waiter; /* a task parked in a read or write of the client */
  r->conn = NULL;
  r->conn_waiter = NULL;
  c->owner = NULL;
  conn_unwait(c);
  if (waiter && waiter->wait == WAIT_CONN) task_wake_later(waiter); /* it answers nil, "closed" */
  if (why == END_RETURNED || why == END_CLOSED) {
    if (!conn_wrote(c) && !c->gone)
      conn_reply(c, 500,
                 why == END_RETURNED ? "the handler returned without writing a response"
                                     : "the client was closed before a response was written");
    else
      conn_end(c);
  } else if (!c->gone && !conn_sent(c)) {
    conn_reply(c,
               why == END_STOPPED                      ? 503
               : why == END_BUDGET || r->budget_killed ? 504
                                                       : 500,
               NULL);
  } else {
    conn_cut(c);
  }
}

static void request_free(struct request *r) {
  struct rt *rt = r->rt;
  struct worker *w = rt->w;
  ev_timer_stop(w->loop, &r->budget);
  if (r->prev)
    r->prev->next = r->next;
  else
    rt->live = r->next;
  if (r->next) r->next->prev = r->prev;
  rt->nlive--;
  stat_set(&w->st->active_requests, rt->nlive);
  stat_set(&w->st->lua_memory, rt->mem.used);
  app_unref(r->app);
  free(r->uri);
  upkeep_request_done(rt);
  if (rt->nfree < REQUEST_POOL) { /* kept for the next request */
    r->next = rt->free;
    rt->free = r;
    rt->nfree++;
  } else {
    free(r);
  }
  worker_conn_done(w);
}

void request_maybe_free(struct request *r) {
  if (r->finished && r->nspawned == 0 && r->conn == NULL && r->timer == NULL) request_free(r);
}

static double cleanup_allowance(const struct rt *rt) {
  double limit = rt->w->srv->cfg.cpu_limit;
  return limit > 0 && limit < 1 ? limit : 1;
}

/* Ends the task's hold on its coroutine. One that did not return cleanly is closed first, from
   the innermost coroutine out, so its pending to-be-closed variables run: under the guard, with
   at most a second. A clean-up the guard stops too is abandoned and logged. */
void request_close_task(struct task *t, int reusable) {
  struct request *r = t->req;
  struct rt *rt = r->rt;
  if (!reusable) {
    lua_State *L = r->app->L;
    struct guard_state outer; /* a task killed from another task runs its clean-up inside it */
    guard_save(rt, &outer);
    for (int i = 0; i < t->depth; i++)
      lua_sethook(t->chain[i], NULL, 0, 0);
    rt->cleanup = 1;
    rt->current = t;
    guard_begin(rt, cleanup_allowance(rt), 0);
    for (int i = t->depth - 1; i >= 0; i--) {
      rt->running = t->chain[i];
#if LUA_VERSION_RELEASE_NUM >= 50406
      lua_closethread(t->chain[i], L);
#else
      (void)L;
      lua_resetthread(t->chain[i]);
#endif
      lua_settop(t->chain[i], 0);
    }
    guard_end(rt);
    guard_restore(rt, &outer);
    if (r->stopped_twice) {
      slog_at(LOG_ERROR,
              "#%llu %s %s: its clean-up (to-be-closed variables) ran over %g s and was stopped "
              "too: the request is abandoned",
              (unsigned long long)r->id, method_of(r), uri_of(r), cleanup_allowance(rt));
      r->stopped_twice = 0;
    }
  }
  lua_State *co = t->co;
  task_unchain(t);
  app_release_thread(r->app, co, t->co_ref, reusable);
  t->co = NULL;
}

/* Builds the log text of the error on top of co: its message (any __tostring called protected and
   under the guard) and co's traceback. Leaves it on the app state's stack. */
const char *request_describe_error(struct request *r, lua_State *co, int st) {
  struct rt *rt = r->rt;
  lua_State *L = r->app->L;
  lua_xmove(co, L, 1); /* a copy for L, the original back on co: nothing grows co's stack */
  lua_pushvalue(L, -1);
  lua_xmove(L, co, 1);
  if (st == LUA_ERRMEM && rt->mem.limit) {
    char msg[96]; /* rounded: lua_pushfstring's %f prints 14 digits */
    snprintf(msg, sizeof msg, "not enough memory (limit %.1f MiB, in use %.1f MiB)",
             (double)rt->mem.limit / 1048576.0, (double)rt->mem.used / 1048576.0);
    lua_pushstring(L, msg);
    stat_add(&rt->w->st->memory_stops, 1);
  } else {
    rt->cleanup = 1;
    rt->current = &r->main;
    rt->running = L;
    guard_begin(rt, cleanup_allowance(rt), 0);
    app_push_error_message(L, -1);
    guard_end(rt);
    rt->cleanup = 0;
    rt->current = NULL;
  }
  luaL_traceback(L, co, lua_tostring(L, -1), 0);
  lua_replace(L, -3);
  lua_pop(L, 1);
  return lua_tostring(L, -1);
}

/* The request's last task ended: the response ends (a timer's job: its timer goes on). */
void request_tasks_done(struct request *r) {
  if (r->timer) timer_job_done(r);
  if (r->returned) request_end(r, END_RETURNED, NULL);
  request_maybe_free(r);
}

/* Pushes on co why the guard or the budget stopped it, unless its error says it already. */
static void push_stop_reason(struct request *r, lua_State *co, int st) {
  char spent[96];
  if (r->budget_killed && st != LUA_ERRRUN)
    lua_pushstring(co, request_budget_text(r, spent, sizeof spent));
  else if (r->cpu_killed && st != LUA_ERRRUN)
    lua_pushfstring(co, "CPU limit of %f s exceeded (the handler ran Lua without yielding)",
                    r->rt->w->srv->cfg.cpu_limit);
  else if (st == LUA_YIELD)
    lua_pushliteral(co, "the handler yielded outside of an scgi call (use scgi's functions to "
                        "wait, not coroutine.yield)");
}

void request_task_ended(struct task *t, int st, int nres) {
  struct request *r = t->req;
  lua_State *co = t->co, *L = r->app->L;
  if (t != &r->main) {
    spawn_ended(t, st, nres);
    return;
  }
  int ok = st == LUA_OK && !r->cpu_killed && !r->budget_killed;
  r->finished = 1;
  if (ok) {
    lua_settop(co, 0);
    request_close_task(t, 1);
    r->returned = 1;
    if (r->nspawned == 0) request_tasks_done(r);
    return;
  }
  ev_timer_stop(r->rt->w->loop, &r->budget);
  if (atomic_load(&r->rt->w->stop) >= 2) {
    request_end(r, END_STOPPED, NULL);
  } else {
    push_stop_reason(r, co, st);
    int top = lua_gettop(L);
    request_end(r, END_ERROR, request_describe_error(r, co, st));
    lua_settop(L, top);
  }
  request_close_task(t, 0);
  spawn_stop_all(r); /* the handler failed: what it spawned goes too */
  if (r->timer) timer_job_done(r);
  request_maybe_free(r);
}

/* Stops the request: the response ends (why), and every task is closed. */
void request_stop(struct request *r, enum request_end why) {
  request_end(r, why, NULL);
  if (!r->finished) {
    r->finished = 1;
    task_cancel_wait(&r->main);
    request_close_task(&r->main, 0);
  }
  spawn_stop_all(r);
  if (r->timer) timer_job_done(r);
  request_maybe_free(r);
}

/* The budget ran out while the request waited: with its connection (the conn's timer), or
   without (its own, once the response ended). */
static void on_budget(struct ev_loop *loop, ev_timer *t, int revents) {
  struct request *r = (struct request *)((char *)t - offsetof(struct request, budget));
  (void)loop;
  (void)revents;
  r->budget_killed = 1;
  request_stop(r, END_BUDGET);
}

static void on_expire(struct conn *c) {
  struct request *r = c->owner;
  r->budget_killed = 1;
  request_stop(r, END_BUDGET);
}

void request_close(struct request *r) { request_end(r, END_CLOSED, NULL); }

void request_set_budget(struct request *r, double seconds) {
  struct ev_loop *loop = r->rt->w->loop;
  ev_timer_stop(loop, &r->budget);
  ev_now_update(loop);
  r->deadline = seconds > 0 ? clock_now() + seconds : 0;
  if (r->conn) {
    conn_set_deadline(r->conn, r->deadline);
  } else if (seconds > 0) {
    ev_timer_set(&r->budget, seconds, 0.);
    ev_timer_start(loop, &r->budget);
  }
  if (r->rt->current && r->rt->current->req == r) guard_set_deadline(r->rt, r->deadline);
}

static int body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 0;
}

/* The first frame of a request's coroutine: the handler's arguments are built here, inside the
   coroutine, so that running out of memory there is the request's error (a 500), not a panic. */
static int request_body(lua_State *L) {
  struct rt *rt = rt_self();
  struct request *r = rt && rt->current && rt->running == L ? rt->current->req : NULL;
  /* only as the request's first frame: debug.getinfo(level, "f") hands it out as a function */
  if (r == NULL || r->hdrs == NULL || lua_touserdata(L, 1) != (void *)r)
    return luaL_error(L, "the request's first frame cannot be called");
  lua_callk(L, r->rt->push_args(L, r), 0, 0, body_k);
  return 0;
}

/* A new request in app (held), not started; deadline 0: no budget. */
struct request *request_new(struct rt *rt, struct app *app, uint64_t id, double deadline) {
  struct request *r = rt->free;
  if (r) {
    rt->free = r->next;
    rt->nfree--;
    memset(r, 0, sizeof *r);
  } else if ((r = calloc(1, sizeof *r)) == NULL) {
    return NULL;
  }
  r->rt = rt;
  r->app = app;
  app_ref(app);
  r->id = id;
  r->start = clock_now();
  r->deadline = deadline;
  ev_init(&r->budget, on_budget);
  int ref;
  lua_State *co = app_thread(app, &ref);
  task_init(&r->main, r, co, ref);
  r->next = rt->live;
  if (rt->live) rt->live->prev = r;
  rt->live = r;
  rt->nlive++;
  stat_set(&rt->w->st->active_requests, rt->nlive);
  return r;
}

/* Runs the request's main task: body, with the nargs values on its coroutine. A request without
   a connection keeps its budget on its own timer. */
void request_start(struct request *r, lua_CFunction body, int nargs) {
  if (r->conn == NULL && r->deadline > 0) {
    double left = r->deadline - clock_now();
    ev_timer_set(&r->budget, left > 0 ? left : 0., 0.);
    ev_timer_start(r->rt->w->loop, &r->budget);
  }
  lua_pushcfunction(r->main.co, body);
  lua_insert(r->main.co, -nargs - 1);
  task_run(&r->main, nargs);
}

/* A parsed request: a task in the worker's current app runs the handler with the arguments
   rt->push_args builds from r->hdrs. */
static int on_start(struct conn *c, const struct scgi_header *h, size_t n, int repeated) {
  struct rt *rt = c->w->rt;
  struct request *r = request_new(rt, rt->app, c->rec.id, c->deadline);
  if (r == NULL) return -1;
  r->conn = c;
  c->owner = r;
  memcpy(r->method, c->rec.method, sizeof r->method);
  r->start = c->rec.start;
  r->hdrs = h;
  r->nhdrs = n;
  r->repeated = repeated != 0;
  lua_pushlightuserdata(r->main.co, r);
  request_start(r, request_body, 1);
  return 0;
}

static void on_resume(struct conn *c) {
  struct request *r = c->owner;
  struct task *t = r ? r->conn_waiter : NULL;
  if (t == NULL || t->wait != WAIT_CONN) {
    conn_unwait(c);
    return;
  }
  r->conn_waiter = NULL;
  task_run(t, 0);
}

const struct conn_handler rt_conn_handler = {on_start, on_resume, on_expire};

void rt_abandon(struct worker *w) {
  struct rt *rt = w->rt;
  if (rt) timers_discard(rt);
  while (rt && rt->live)
    request_stop(rt->live, END_STOPPED); /* frees it */
  while (rt && rt->free) {
    struct request *r = rt->free;
    rt->free = r->next;
    free(r);
  }
  if (rt) rt->nfree = 0;
}
