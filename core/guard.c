/* guard.c: the CPU guard. No hook runs on the fast path: a watchdog thread looks at every worker
   every few milliseconds, and only in one whose running resume has overrun its time slice, its
   CPU allowance or its request's budget does it act: it sets the slice flag, or sends the worker
   a signal whose handler arms a count hook on the coroutine running Lua there (as lua.c arms its
   hook from SIGINT). The hook then stops that resume: it raises at every instruction of the
   task's coroutines until the error reaches the top, so a pcall cannot keep the handler going. */
#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accept.h"
#include "clock.h"
#include "log.h"
#include "request.h"
#include "rt.h"
#include "server.h"
#include "task.h"
#include "upkeep.h"
#include "worker.h"

#define SLICE_NS 20000000ull        /* a time slice: then a request's reads and writes yield */
#define TICK_BUSY_NS 2000000ull     /* the watchdog's period while some worker runs Lua */
#define TICK_IDLE_NS 20000000ull    /* ... and while none does */
#define RESIGNAL_NS 1000000000ull   /* a resume still over its limit is signalled again */
#define STUCK_NS 5000000000ull      /* a resume this long over its limit is reported stuck */
#define SLOW_RESUME_NS 100000000ull /* --slow-log asks a resume this long where it is */

/* The runtime of the thread a signal interrupts (read by the handler: initial-exec TLS, already
   set, so reading it is async-signal-safe). */
static __thread struct rt *guard_rt __attribute__((tls_model("initial-exec")));

/* Held by the watchdog while it looks at the workers, and by whoever detaches or frees a
   runtime: a runtime the watchdog reads is never freed under it, and no signal goes to the
   thread of one that was detached. */
static pthread_mutex_t watch_mu = PTHREAD_MUTEX_INITIALIZER;

static int guard_signal(void) { return SIGRTMIN + 1; }

static void on_guard_signal(int sig) {
  int saved = errno;
  struct rt *rt = guard_rt;
  lua_State *L = rt ? rt->running : NULL;
  (void)sig;
  if (L) lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1); /* meant to be called asynchronously */
  errno = saved;
}

static void install_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_guard_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(guard_signal(), &sa, NULL);
}

/* Installs the signal handler (once per process) and marks this thread as its worker's. */
int guard_install(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  sigset_t set;
  pthread_once(&once, install_handler);
  guard_rt = rt_self();
  sigemptyset(&set);
  sigaddset(&set, guard_signal());
  return pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* worker threads start with all blocked */
}

/* The runtime closes: the watchdog and rt_interrupt no longer read it or signal its thread, and
   a signal already sent stays blocked there (the thread ends). */
void guard_detach(struct rt *rt) {
  sigset_t set;
  pthread_mutex_lock(&watch_mu);
  rt->detached = 1;
  pthread_mutex_unlock(&watch_mu);
  sigemptyset(&set);
  sigaddset(&set, guard_signal());
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* one sent before stays pending: the thread ends */
  guard_rt = NULL;
}

void rt_free(struct worker *w) {
  pthread_mutex_lock(&watch_mu);
  struct rt *rt = w->rt;
  w->rt = NULL;
  pthread_mutex_unlock(&watch_mu);
  free(rt);
}

/* Stops the Lua the worker runs now, whatever its limits (the second stop signal). */
void rt_interrupt(struct worker *w) {
  pthread_mutex_lock(&watch_mu);
  struct rt *rt = w->rt;
  if (rt != NULL && !rt->detached) {
    atomic_store_explicit(&rt->limit_ns, 1, memory_order_relaxed);
    pthread_kill(w->thread, guard_signal());
  }
  pthread_mutex_unlock(&watch_mu);
}

static uint64_t deadline_ns(uint64_t now, double deadline) {
  double left = deadline - (double)now * 1e-9; /* both on CLOCK_MONOTONIC */
  return now + (left > 0 ? (uint64_t)(left * 1e9) : 0);
}

static uint64_t limit_of(struct rt *rt, uint64_t now, double deadline) {
  uint64_t limit = rt->allowance_end_ns;
  if (deadline > 0) {
    uint64_t d = deadline_ns(now, deadline);
    if (limit == 0 || d < limit) limit = d;
  }
  return limit;
}

void guard_begin(struct rt *rt, double allowance, double deadline) {
  uint64_t now = clock_ns();
  rt->allowance = allowance;
  rt->allowance_end_ns = allowance > 0 ? now + (uint64_t)(allowance * 1e9) : 0;
  rt->killed = 0;
  atomic_store_explicit(&rt->slice_over, 0, memory_order_relaxed);
  atomic_store_explicit(&rt->signaled, 0, memory_order_relaxed);
  atomic_store_explicit(&rt->limit_ns, limit_of(rt, now, deadline), memory_order_relaxed);
  atomic_store_explicit(&rt->resume_ns, now, memory_order_release);
}

void guard_save(struct rt *rt, struct guard_state *g) {
  g->current = rt->current;
  g->running = rt->running;
  g->resume_ns = atomic_load_explicit(&rt->resume_ns, memory_order_relaxed);
  g->limit_ns = atomic_load_explicit(&rt->limit_ns, memory_order_relaxed);
  g->allowance_end_ns = rt->allowance_end_ns;
  g->allowance = rt->allowance;
  g->killed = rt->killed;
  g->cleanup = rt->cleanup;
}

void guard_restore(struct rt *rt, const struct guard_state *g) {
  rt->current = g->current;
  rt->running = g->running;
  rt->allowance_end_ns = g->allowance_end_ns;
  rt->allowance = g->allowance;
  rt->killed = g->killed;
  rt->cleanup = g->cleanup;
  atomic_store_explicit(&rt->limit_ns, g->limit_ns, memory_order_relaxed);
  atomic_store_explicit(&rt->resume_ns, g->resume_ns, memory_order_release);
}

void guard_set_deadline(struct rt *rt, double deadline) {
  atomic_store_explicit(&rt->limit_ns, limit_of(rt, clock_ns(), deadline), memory_order_relaxed);
}

void guard_end(struct rt *rt) {
  atomic_store_explicit(&rt->resume_ns, 0, memory_order_release);
  rt->running = NULL;
  rt->killed = 0;
}

/* Arms the raising hook on every coroutine of the task (new coroutines inherit it). */
void guard_kill(struct task *t) {
  for (int i = 0; i < t->depth; i++)
    lua_sethook(t->chain[i], guard_hook, LUA_MASKCOUNT, 1);
}

/* The hook the watchdog arms. When the running resume is over its limit, it stops it: by
   yielding (so no pcall can catch it, and Lua keeps hooks enabled in the coroutine for its
   clean-up), or where no yield can pass, by raising at every instruction. */
void guard_hook(lua_State *L, lua_Debug *ar) {
  struct rt *rt = guard_rt;
  (void)ar;
  if (rt == NULL) {
    lua_sethook(L, NULL, 0, 0);
    return;
  }
  struct request *r = rt->current ? rt->current->req : NULL;
  if (rt->want_trace) upkeep_trace_running(L, rt);
  if (!rt->killed) {
    uint64_t start = atomic_load_explicit(&rt->resume_ns, memory_order_acquire);
    uint64_t limit = atomic_load_explicit(&rt->limit_ns, memory_order_relaxed);
    uint64_t now = clock_ns();
    if (start == 0 || limit == 0 || now < limit) { /* a late signal, or a stale hook: not over */
      lua_sethook(L, NULL, 0, 0);
      return;
    }
    rt->killed = 1;
    if (atomic_load(&rt->w->stop) >= 2) {
      /* stopping now: neither the budget nor the CPU limit */
    } else if (r && rt->cleanup) {
      r->stopped_twice = 1;
    } else if (r) {
      double t = (double)now * 1e-9;
      if (r->deadline > 0 && t >= r->deadline - 1e-3)
        r->budget_killed = 1;
      else
        r->cpu_killed = 1;
    }
    if (rt->current) guard_kill(rt->current);
  }
  if (!rt->cleanup && lua_isyieldable(L)) {
    lua_yield(L, 0); /* from a hook: returns, and the coroutine yields once the hook is done */
    return;
  }
  lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
  guard_raise(L);
}

int guard_raise(lua_State *L) {
  struct rt *rt = guard_rt;
  struct request *r = rt && rt->current ? rt->current->req : NULL;
  if (rt == NULL) return luaL_error(L, "stopped");
  if (atomic_load(&rt->w->stop) >= 2) return luaL_error(L, "the server is stopping now");
  char spent[96];
  if (r && r->budget_killed)
    return luaL_error(L, "%s", request_budget_text(r, spent, sizeof spent));
  if (rt->cleanup) return luaL_error(L, "clean-up of a stopped request took too long");
  return luaL_error(L, "CPU limit of %f s exceeded (the handler ran Lua without yielding)",
                    rt->allowance);
}

/* ---- the watchdog ---- */

struct watch {
  uint64_t start, first_signal, signaled_at;
  int stuck_logged, traced;
};

static void watch_worker(struct worker *w, struct watch *ws, uint64_t now, int *busy) {
  struct rt *rt = w->rt;
  if (rt == NULL || rt->detached) return;
  uint64_t start = atomic_load_explicit(&rt->resume_ns, memory_order_acquire);
  if (start == 0) return;
  *busy = 1;
  if (ws->start != start) {
    ws->start = start;
    ws->first_signal = ws->signaled_at = 0;
    ws->traced = 0;
    ws->stuck_logged = 0;
  }
  if (now - start >= SLICE_NS) atomic_store_explicit(&rt->slice_over, 1, memory_order_relaxed);
  double slow = w->srv->cfg.slow_log;
  uint64_t req = atomic_load_explicit(&rt->request_ns, memory_order_relaxed);
  if (slow > 0 && !ws->traced && now - start >= SLOW_RESUME_NS &&
      now - req >= (uint64_t)(slow * 1e9)) {
    ws->traced = 1; /* --slow-log: a request that runs Lua this long tells where it is */
    rt->want_trace = 1;
    pthread_kill(w->thread, guard_signal());
  }
  uint64_t limit = atomic_load_explicit(&rt->limit_ns, memory_order_relaxed);
  if (limit == 0 || now < limit) return;
  if (ws->signaled_at == 0 || now - ws->signaled_at >= RESIGNAL_NS) {
    if (ws->first_signal == 0) ws->first_signal = now;
    ws->signaled_at = now;
    atomic_store_explicit(&rt->signaled, 1, memory_order_relaxed);
    pthread_kill(w->thread, guard_signal());
  }
  if (!ws->stuck_logged && now - ws->first_signal >= STUCK_NS) {
    ws->stuck_logged = 1;
    slog_at(LOG_ERROR,
            "worker %d: the guard has not stopped its Lua %.1f s after its limit (it runs a "
            "__gc metamethod, where Lua runs no hooks, or a blocking C function)",
            w->id, (double)(now - ws->first_signal) * 1e-9);
  }
}

static void *watchdog(void *arg) {
  struct server *s = arg;
  struct watch *ws = calloc((size_t)s->nworkers, sizeof *ws);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  log_attach(s->log);
  while (!atomic_load(&s->guard_stop)) {
    int busy = 0;
    uint64_t now = clock_ns();
    pthread_mutex_lock(&watch_mu);
    for (int i = 0; ws && i < s->nworkers; i++)
      watch_worker(&s->workers[i], &ws[i], now, &busy);
    accept_watch(s, now);
    pthread_mutex_unlock(&watch_mu);
    uint64_t tick = busy ? TICK_BUSY_NS : TICK_IDLE_NS;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)tick};
    nanosleep(&ts, NULL);
  }
  free(ws);
  return NULL;
}

int rt_guard_start(struct server *s, char *err, size_t errlen) {
  atomic_store(&s->guard_stop, 0);
  if (pthread_create(&s->guard_thread, NULL, watchdog, s) != 0) {
    snprintf(err, errlen, "cannot start the guard's watchdog thread");
    return -1;
  }
  s->guard_running = 1;
  return 0;
}

void rt_guard_stop(struct server *s) {
  if (!s->guard_running) return;
  atomic_store(&s->guard_stop, 1);
  pthread_join(s->guard_thread, NULL);
  s->guard_running = 0;
}
