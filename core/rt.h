/* rt.h: the Lua runtime of a worker, as the worker and the server see it (no Lua types here).
   The runtime (task.c) builds the worker's Lua state, runs requests as tasks and owns the
   guard; the worker calls it only through these functions. */
#ifndef SCGI_RT_H
#define SCGI_RT_H

#include <stddef.h>

struct worker;
struct server;
struct conn_handler;
struct lua_State;
struct request;

/* What the runtime needs from the bindings above it (set by main.c and lscgi.c). */
struct rt_bindings {
  void (*prepare)(struct lua_State *L); /* readies a new state before it loads the app */
  /* pushes a request's handler and its arguments on its coroutine; returns how many arguments */
  int (*push_args)(struct lua_State *co, struct request *r);
};

/* Builds the worker's Lua runtime on the worker's thread (the app loaded, or the caller's function
   handler wrapped). Returns 0, or -1 with a message in err. */
int rt_open(struct worker *w, char *err, size_t errlen);
/* SIGHUP: a new state from the app file for new requests; requests in flight finish on the old. */
void rt_reload(struct worker *w);
/* The worker stops accepting (SIGTERM): pending timers run now, premature. */
void rt_stopping(struct worker *w);
/* The worker is stopping now (the grace period is over): every request still running is
   stopped, and one that sent nothing gets a 503. */
void rt_abandon(struct worker *w);
/* Closes the runtime (after rt_abandon), on the worker's thread: its Lua state closes and the
   guard (its signal, the watchdog, rt_interrupt) leaves it alone from then on. The struct itself
   stays for the other threads that may still look at it, until rt_free. */
void rt_close(struct worker *w);
/* Frees the closed runtime, once the worker's thread was joined. */
void rt_free(struct worker *w);
/* How long (ns) the worker has been in its current Lua resume, 0 if it is in none; from any
   thread. */
unsigned long long rt_busy_since(const struct worker *w, unsigned long long now_ns);
/* Requests whose handler (or a task) still runs, and pending timers. */
unsigned rt_live(const struct worker *w);
/* The handler interface the worker gives its connections. */
extern const struct conn_handler rt_conn_handler;

/* The guard's watchdog (one per server): a thread that arms the CPU guard in a worker whose Lua
   has run too long without yielding. */
int rt_guard_start(struct server *s, char *err, size_t errlen);
void rt_guard_stop(struct server *s);
/* Stops the Lua the worker runs now, whatever its limits (the second stop signal). */
void rt_interrupt(struct worker *w);

#endif
