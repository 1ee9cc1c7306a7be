/* ltask.c: scgi.spawn, scgi.wait, scgi.kill (tasks of the running request) and scgi.timer,
   scgi.every (functions that run later, outside any request). */
#include <lauxlib.h>

#include "lbind.h"
#include "load.h"
#include "request.h"
#include "spawn.h"
#include "task.h"

static const char TASK_MT[] = "scgi.task"; /* its address is a task handle's tag (lbind.h) */

static struct task_box *check_task(lua_State *L, int i) {
  return (struct task_box *)lbind_check(L, i, TASK_MT, sizeof(struct task_box));
}

/* scgi.spawn(f, ...): f(...) as a task of the running request; returns the task. */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  struct task *me = task_running(L, "scgi.spawn");
  if (spawn_task(L, me, lua_gettop(L) - 1, TASK_MT) == NULL) return lua_error(L);
  return 1;
}

/* The results of an ended task: true, its results... or false, its error. */
static int push_results(lua_State *L, int i) {
  if (lua_getiuservalue(L, i, 1) != LUA_TTABLE) /* debug.setuservalue can put anything there */
    return luaL_error(L, "the task's results are gone");
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (int k = 1; k <= n; k++)
    lua_rawgeti(L, -k, k);
  return n;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return push_results(L, 1);
}

/* scgi.wait(task): once it ended, true and its results, or false and its error. */
static int l_wait(lua_State *L) {
  struct task_box *b = check_task(L, 1);
  lua_settop(L, 1);
  if (b->t == NULL) return push_results(L, 1);
  struct task *me = task_running(L, "scgi.wait");
  if (b->t == me) return luaL_error(L, "a task cannot wait for itself");
  if (b->t->req != me->req) return luaL_error(L, "the task belongs to another request");
  return spawn_wait(L, me, b->t, 0, wait_k);
}

/* scgi.kill(task): stops it (its result is false, "killed"); nil, "already finished" after. */
static int l_kill(lua_State *L) {
  struct task_box *b = check_task(L, 1);
  if (b->t == NULL) {
    luaL_pushfail(L);
    lua_pushliteral(L, "already finished");
    return 2;
  }
  struct task *me = task_running(L, "scgi.kill");
  if (b->t == me) return luaL_error(L, "a task cannot kill itself");
  if (b->t->req != me->req) return luaL_error(L, "the task belongs to another request");
  spawn_kill(b->t);
  lua_pushboolean(L, 1);
  return 1;
}

static int add_timer(lua_State *L, double interval, const char *name) {
  lua_Number delay = luaL_checknumber(L, 1);
  luaL_argcheck(L, delay >= 0 && delay < 1e9, 1, "seconds out of range");
  if (interval >= 0) luaL_argcheck(L, delay > 0, 1, "the interval must be positive");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checkstack(L, 8, "too many arguments"); /* so that a run's coroutine can hold them */
  struct rt *rt = rt_self();
  if (rt && rt->loader) /* the app file loads on a thread of its own: set once it serves */
    return load_defer_timer(L, (double)delay, interval >= 0 ? (double)delay : 0);
  struct app *app = rt && rt->current ? rt->current->req->app : rt ? rt->loading : NULL;
  if (app == NULL)
    return luaL_error(L,
                      "%s can only be called in a worker (at load time, in a "
                      "request or in a timer)",
                      name);
  const char *why;
  if (timer_add(rt, app, L, (double)delay, interval >= 0 ? (double)delay : 0, lua_gettop(L) - 2,
                &why) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* scgi.timer(delay, f, ...): f(premature, ...) in delay seconds; true, or nil and why not. */
static int l_timer(lua_State *L) { return add_timer(L, -1, "scgi.timer"); }

/* scgi.every(interval, f, ...): f(premature, ...) every interval seconds. */
static int l_every(lua_State *L) { return add_timer(L, 1, "scgi.every"); }

static int task_tostring(lua_State *L) {
  struct task_box *b = check_task(L, 1);
  lua_pushstring(L, b->t ? "scgi.task (running)" : "scgi.task (ended)");
  return 1;
}

/* The task metatable (once per state, from luaopen_scgi_core), and the functions in table -1. */
void ltask_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"spawn", l_spawn}, {"wait", l_wait},   {"kill", l_kill},
                                   {"timer", l_timer}, {"every", l_every}, {NULL, NULL}};
  if (luaL_newmetatable(L, TASK_MT)) {
    lua_pushcfunction(L, task_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
