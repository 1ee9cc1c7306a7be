/* upkeep.c: --slow-log and state recycling. A request still running after --slow-log seconds
   gets one log line while it runs: what it waits on and the Lua traceback of where it is; a
   parked one is seen by a timer of the worker's, one running Lua by the guard's watchdog, which
   asks the hook for it. --max-requests and --max-lua-memory build the worker a fresh Lua state
   (requests in flight finish on the old one). */
#include "upkeep.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "task.h"
#include "worker.h"

/* --max-lua-memory: after a full collection that left the heap under the limit, the next one
   waits until the heap grew by this share of the limit, so the collections are paid for by
   allocation (as Lua's own pause is) and the heap never goes far past the limit. */
#define FULL_GC_STEP 0.125

static const char *method(const struct request *r) { return r->method[0] ? r->method : "-"; }

/* Logs a request that runs long: its tasks, what each waits on and where. */
static void log_slow(struct request *r, double now) {
  lua_State *L = r->app->L;
  luaL_Buffer b;
  int top = lua_gettop(L);
  luaL_buffinit(L, &b);
  for (struct task *t = &r->main; t; t = t == &r->main ? r->spawned : t->next) {
    if (t->co == NULL) continue; /* the handler returned; its tasks go on */
    lua_State *co = t->depth > 0 ? t->chain[t->depth - 1] : t->co;
    lua_pushfstring(L, "\n  %s, waiting on %s: ", t == &r->main ? "the handler" : "a task",
                    task_waiting_on(t));
    luaL_addvalue(&b);
    luaL_traceback(L, co, NULL, 0);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  slog_at(LOG_WARN, "#%llu %s %s: slow: %.1f s so far%s", (unsigned long long)r->id, method(r),
          request_uri(r), now - r->start, lua_tostring(L, -1));
  lua_settop(L, top);
  r->slow_logged = 1;
}

static void on_slow_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  struct rt *rt = (struct rt *)((char *)w - offsetof(struct rt, slow_timer));
  double limit = rt->w->srv->cfg.slow_log, now = clock_now();
  (void)loop;
  (void)revents;
  for (struct request *r = rt->live; r; r = r->next)
    if (!r->slow_logged && now - r->start >= limit) log_slow(r, now);
}

void upkeep_trace_running(lua_State *L, struct rt *rt) {
  struct request *r = rt->current ? rt->current->req : NULL;
  rt->want_trace = 0;
  if (r == NULL || r->slow_logged || rt->cleanup) return;
  double now = clock_now();
  luaL_traceback(L, L, NULL, 0);
  slog_at(LOG_WARN, "#%llu %s %s: slow: %.1f s so far\n  %s, running Lua: %s",
          (unsigned long long)r->id, method(r), request_uri(r), now - r->start,
          rt->current == &r->main ? "the handler" : "a task", lua_tostring(L, -1));
  lua_pop(L, 1);
  r->slow_logged = 1;
}

void upkeep_start(struct rt *rt) {
  double limit = rt->w->srv->cfg.slow_log;
  upkeep_new_app(rt);
  ev_init(&rt->slow_timer, on_slow_timer);
  if (limit <= 0) return;
  double every = limit / 4 < 0.05 ? 0.05 : limit / 4 > 1 ? 1 : limit / 4;
  ev_timer_set(&rt->slow_timer, every, every);
  ev_timer_start(rt->w->loop, &rt->slow_timer);
}

void upkeep_stop(struct rt *rt) { ev_timer_stop(rt->w->loop, &rt->slow_timer); }

/* --max-requests N: the next state recycles after N requests, give or take 10%, so that the
   workers do not all rebuild at once. */
void upkeep_new_app(struct rt *rt) {
  int n = rt->w->srv->cfg.max_requests;
  rt->served = 0;
  if (n <= 0) {
    rt->recycle_at = 0;
    return;
  }
  unsigned seed = (unsigned)(clock_now() * 1e6) ^ (unsigned)rt->w->id * 2654435761u;
  int spread = n / 10;
  rt->recycle_at =
      (unsigned)(n + (spread ? (int)(rand_r(&seed) % (unsigned)(2 * spread + 1)) - spread : 0));
}

/* Starts building the fresh state (on a thread of its own: the old one serves meanwhile) from
   the sources the running app loaded, so recycling never deploys what is on disk now. */
static void recycle(struct rt *rt, const char *why) {
  char err[1024];
  if (rt->load) return; /* one is loading */
  if (rt_load_new(rt->w, 1, why, err, sizeof err) < 0) upkeep_recycled(rt, why, err);
}

void upkeep_recycled(struct rt *rt, const char *why, const char *err) {
  struct worker *w = rt->w;
  if (err) {
    slog_at(LOG_ERROR, "worker %d: cannot build a fresh Lua state (%s): %s", w->id, why, err);
    upkeep_new_app(rt); /* try again after as many requests */
    return;
  }
  stat_add(&w->st->recycles, 1);
  rt->next_full_gc = 0;
  slog("worker %d: a fresh Lua state (%s)", w->id, why);
}

void upkeep_request_done(struct rt *rt) {
  struct server *s = rt->w->srv;
  char why[96];
  if (s->fn_L || atomic_load(&rt->w->stop)) return;
  if (rt->recycle_at && ++rt->served >= rt->recycle_at) {
    snprintf(why, sizeof why, "%u requests, --max-requests %d", rt->served, s->cfg.max_requests);
    recycle(rt, why);
    return;
  }
  double limit = s->cfg.max_lua_memory * 1048576.0;
  if (limit <= 0) return;
  lua_State *L = rt->app->L;
  double heap = (double)lua_gc(L, LUA_GCCOUNT) * 1024.0; /* garbage and all */
  if (heap < limit || heap < rt->next_full_gc) return;
  lua_gc(L, LUA_GCCOLLECT);
  double kb = (double)lua_gc(L, LUA_GCCOUNT);
  rt->next_full_gc = kb * 1024.0 + limit * FULL_GC_STEP;
  if (kb * 1024.0 < limit) return;
  snprintf(why, sizeof why, "%.1f MiB after a collection, --max-lua-memory %g", kb / 1024.0,
           s->cfg.max_lua_memory);
  recycle(rt, why);
}
