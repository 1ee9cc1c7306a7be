/* load.h: loading the app file (at start, reload and recycle) on a thread of its own under
   --load-timeout, so a worker goes on answering with its running app while a new one loads. */
#ifndef SCGI_LOAD_H
#define SCGI_LOAD_H

#include <lua.h>
#include <stddef.h>

struct rt;
struct app;
struct app_code;
struct load;

enum load_kind { LOAD_START, LOAD_RELOAD, LOAD_RECYCLE };

/* Starts loading the app file for rt's worker on a new thread (code: replay those sources, or
   NULL to read the files); why says what asked (for the log). A LOAD_START is waited for with
   load_wait; the others end on the worker's loop in rt_load_done. NULL with a message in err. */
struct load *load_start(struct rt *rt, enum load_kind kind, struct app_code *code, const char *why,
                        char *err, size_t errlen);
/* LOAD_START: waits for the load, bounded by --load-timeout; the app (its memory counted in rt),
   or NULL with the reason in err. A load stuck in a C call past the limit is abandoned. */
struct app *load_wait(struct load *l, char *err, size_t errlen);
/* The worker stops: the load in flight is stopped (or abandoned, stuck in a C call), its app
   dropped; a stuck load the worker remembered is let go. */
void load_cancel(struct rt *rt);
/* Whether an abandoned load of rt's worker is still stuck (a new load waits until it is not). */
int load_stuck(struct rt *rt);
/* task.c: a LOAD_RELOAD or LOAD_RECYCLE ended, on the worker's thread: a (its memory counted in
   rt), or NULL with the reason; timed_out: --load-timeout stopped it. */
void rt_load_done(struct rt *rt, struct app *a, const char *err, enum load_kind kind,
                  const char *why, int timed_out);
/* task.c: sets rt_self() for this thread (a loader's stand-in runtime, or NULL). */
void rt_set_self(struct rt *rt);
/* Whether l's thread still loads for a worker (not abandoned). */
int load_live(const struct load *l);
/* scgi.timer and scgi.every at load time (L's stack: delay, f, args...): kept in the loading
   state, set on the worker once the app serves; true, or nil and why not. */
int load_defer_timer(lua_State *L, double delay, double interval);
/* Sets the timers the app's file asked for on the worker (rt_self() is rt). */
void load_adopt_timers(struct rt *rt, struct app *a);

#endif
