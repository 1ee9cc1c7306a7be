/* task.h: the runtime of a worker: tasks (a coroutine, the coroutines it resumed, and what it
   waits on), requests (the handler's task bound to a connection, with its budget and client),
   the CPU guard, and the one policy for how a request ends. Bindings park and wake tasks here. */
#ifndef SCGI_TASK_H
#define SCGI_TASK_H

#include <ev.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdint.h>

#include "app.h"

struct worker;
struct conn;
struct rt;
struct request;

enum task_wait {
  WAIT_NONE,  /* running, or ready to run */
  WAIT_CONN,  /* the request's socket (conn_wait) */
  WAIT_TIMER, /* scgi.sleep, or the next loop iteration */
  WAIT_OTHER  /* something else (an outbound socket): cancel stops it */
};

#define TASK_CHAIN 8 /* coroutines a task keeps inline: itself and those it resumed */

struct task {
  lua_State *co; /* its coroutine */
  int co_ref;
  struct request *req; /* the request it belongs to */
  enum task_wait wait;
  ev_timer wake;
  void (*cancel)(void *); /* WAIT_OTHER: stops what the task waits on */
  void *cancel_arg;
  const char *waiting_on; /* WAIT_OTHER: what, for --slow-log */
  /* chain[0] is co; chain[i] was resumed by chain[i - 1] through scgi's coroutine.resume, and the
     top one runs (or waits); nowait counts entries resumed from where no yield can pass */
  lua_State **chain;
  int depth, cap, nowait;
  lua_State *inline_chain[TASK_CHAIN];
  unsigned char inline_nowait[TASK_CHAIN];
  unsigned char *chain_nowait;
  /* a spawned task (scgi.spawn): */
  struct task *prev, *next; /* in its request's list */
  struct task_box *box;     /* its Lua handle, held (box_ref) while it runs */
  int box_ref;
  struct task *waiter; /* the task waiting for it in scgi.wait */
  int nargs;           /* the arguments its first resume passes */
};

/* A worker's runtime; the fields the guard's watchdog reads are atomics. */
struct rt {
  struct worker *w;
  struct app *app; /* where new requests run */
  struct app_mem mem;
  struct app_env env;
  int (*push_args)(lua_State *co, struct request *r); /* the handler's arguments (lclient.c) */
  struct task *current;                               /* the task running now, or NULL */
  lua_State *volatile running; /* the coroutine running Lua now: the guard arms its hook */
  _Atomic uint64_t resume_ns;  /* when the running resume began (0: none), for the watchdog */
  _Atomic uint64_t limit_ns;   /* when it is over: its allowance or its request's budget */
  atomic_int slice_over;       /* it has had its time slice: reads and writes yield first */
  atomic_int signaled;         /* the watchdog signalled this resume */
  volatile int killed;         /* the guard stopped this resume: every instruction raises */
  double allowance;            /* what the guard allows the running resume */
  uint64_t allowance_end_ns;   /* when that allowance ends (0: none) */
  int cleanup;                 /* the running resume is a stopped request's clean-up */
  struct request *live;
  unsigned nlive;
  _Atomic uint64_t request_ns; /* when the running task's request started, for --slow-log */
  volatile int want_trace;     /* the watchdog asks the hook for a --slow-log traceback */
  ev_timer slow_timer;         /* --slow-log: looks at the parked requests */
  unsigned served;             /* requests started in the current app (--max-requests) */
  unsigned recycle_at;         /* ... after how many it is built anew */
  double next_full_gc;         /* --max-lua-memory: the heap size of the next full collection */
  struct request *free;        /* a pool of request structs (nfree) */
  struct timer *timers;        /* pending scgi.timer and scgi.every */
  unsigned nfree, ntimers, nspawned;
  struct app *loading; /* the app whose file is being loaded (timers set then belong to it) */
  struct load *load, *stuck, *loader; /* load.c: in flight; abandoned; a loader's own (its rt) */
  int load_again, detached; /* a reload came while one loaded; closed: the guard leaves it be */
};

#define REQUEST_POOL 64
/* The worker runtime of this thread, or NULL outside a worker. */
struct rt *rt_self(void);

/* The running task when L is the coroutine it runs now (so it can wait there); raises naming
   what otherwise. */
struct task *task_running(lua_State *L, const char *what);
/* Raises unless the running task can wait here (it was not stopped, and no C call is in the
   way); the task_wait_* calls check it too, but a binding that sets up a wait first calls it. */
void task_check_wait(lua_State *L, struct task *t);
/* Parks the running task, then continues in k once woken. */
int task_wait_conn(lua_State *L, struct task *t, int events, lua_KContext ctx, lua_KFunction k);
int task_sleep(lua_State *L, struct task *t, double seconds, lua_KContext ctx, lua_KFunction k);
int task_wait_other(lua_State *L, struct task *t, void (*cancel)(void *), void *arg,
                    const char *what, lua_KContext ctx, lua_KFunction k);
/* What a parked task waits on, in words (for --slow-log). */
const char *task_waiting_on(const struct task *t);
/* Resumes a task parked with task_wait_other (called from the loop). */
void task_wake(struct task *t);
/* Resumes a parked task on the next loop iteration (not from inside another task). */
void task_wake_later(struct task *t);
/* Whether the running task has had its time slice and should yield at its next read or write. */
int task_slice_over(lua_State *L);
int task_yield_slice(lua_State *L, struct task *t, lua_KContext ctx, lua_KFunction k);

/* scgi's coroutine.resume: L resumes co inside the running task (so a wait in co parks the task
   and comes back to co: *parked is then 1, and the caller yields too), or as Lua does outside of
   one. Returns lua_resume's status with the results (or the error) on co's stack. */
int task_resume_coroutine(lua_State *L, lua_State *co, int nargs, int *nres, int *parked);
/* Whether co is part of a running or parked task (its status is "normal"); of the running one. */
int task_holds(lua_State *co);
int task_holds_mine(lua_State *co);

void task_init(struct task *t, struct request *r, lua_State *co, int ref);
void task_run(struct task *t, int nargs);
void task_cancel_wait(struct task *t);
void task_unchain(struct task *t);

/* What the guard knows of the running resume, kept aside while a nested clean-up (a task killed
   from another) runs its own under the guard. */
struct guard_state {
  struct task *current;
  lua_State *running;
  uint64_t resume_ns, limit_ns, allowance_end_ns;
  double allowance;
  int killed, cleanup;
};
void guard_save(struct rt *rt, struct guard_state *g);
void guard_restore(struct rt *rt, const struct guard_state *g);

/* guard.c: the CPU guard. The running resume is bounded by allowance (seconds, 0: none) and the
   request's deadline; the watchdog arms the hook when it runs over. */
void guard_begin(struct rt *rt, double allowance, double deadline);
void guard_end(struct rt *rt);
/* The running request's deadline changed (client:budget). */
void guard_set_deadline(struct rt *rt, double deadline);
void guard_hook(lua_State *L, lua_Debug *ar);
/* Raises the error that says why the running resume was stopped. */
int guard_raise(lua_State *L);
/* Makes every further instruction of the task's coroutines raise (a stopped request). */
void guard_kill(struct task *t);
/* The guard takes this thread's runtime; or leaves it alone as it closes (guard_detach). */
int guard_install(void);
void guard_detach(struct rt *rt);

#endif
