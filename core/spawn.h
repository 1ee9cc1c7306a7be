/* spawn.h: the tasks a request spawns (scgi.spawn, wait, kill) and timers (scgi.timer, every):
   jobs without a connection that run a function with the whole cooperative API. */
#ifndef SCGI_SPAWN_H
#define SCGI_SPAWN_H

#include <lua.h>

struct rt;
struct app;
struct task;
struct request;

/* A spawned task's Lua handle: t is NULL once it ended; its results are then the box's first
   user value, a table { ok, ... } with n set. */
struct task_box {
  const char *tag; /* lbind.h */
  struct task *t;
};

/* Spawns a task of the running task's request that runs the function below the top nargs
   values of L with them as arguments; it starts on the next loop iteration. Pushes its handle
   (a userdata of type mt, lbind.h). Returns the task, or NULL with an error pushed. */
struct task *spawn_task(lua_State *L, struct task *parent, int nargs, const char *mt);
/* Parks me until t ends (task_wake). */
int spawn_wait(lua_State *L, struct task *me, struct task *t, lua_KContext ctx, lua_KFunction k);
/* Stops t: its result is false, "killed". */
void spawn_kill(struct task *t);
/* A spawned task's coroutine ended (from request_task_ended). */
void spawn_ended(struct task *t, int st, int nres);
/* Stops every task the request spawned (the request is stopped). */
void spawn_stop_all(struct request *r);

/* Sets a timer: in delay seconds, the function below the top nargs values of L runs with
   (premature, args...) in a job of its own; interval > 0 repeats it. Returns 0, or -1 with a
   reason in *why. */
int timer_add(struct rt *rt, struct app *app, lua_State *L, double delay, double interval,
              int nargs, const char **why);
/* A timer's job ended: an every is set again, unless stopped. */
void timer_job_done(struct request *r);
/* Runs now, with premature = true, the pending timers of app (NULL: all), or drops them all. */
void timers_premature(struct rt *rt, struct app *app);
void timers_discard(struct rt *rt);
/* Drops the pending timers of app (its file failed to load). */
void timers_drop(struct rt *rt, struct app *app);

#endif
