/* lcoro.c: scgi's coroutine library, put over Lua's in the worker states: inside a request, a wait
   in a coroutine the handler resumed (a coroutine.wrap iterator, a generator, a WSAPI body) parks
   the request and comes back to that coroutine; coroutine.yield keeps its meaning between
   coroutines. Outside a request these behave exactly as Lua's own. */
#include <lauxlib.h>

#include "lbind.h"
#include "task.h"

static lua_State *getco(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return co;
}

static int close_co(lua_State *co, lua_State *L) {
#if LUA_VERSION_RELEASE_NUM >= 50406
  return lua_closethread(co, L);
#else
  (void)L;
  return lua_resetthread(co);
#endif
}

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* After co ran: its results (true, ...) or error (false, err); or, when it parked the task, L
   yields too and resume_k continues co on the next resume. */
static int resume_after(lua_State *L, lua_State *co, int nargs) {
  int nres, parked, st = task_resume_coroutine(L, co, nargs, &nres, &parked);
  if (parked) return lua_yieldk(L, 0, 0, resume_k);
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "too many results to resume");
      return 2;
    }
    lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return nres + 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

/* The coroutine in slot idx, which debug.setlocal or debug.setupvalue may have replaced; parked:
   the one the running task parked in (resume_k, wrap_k). */
static lua_State *thread_at(lua_State *L, int idx, int parked) {
  lua_State *co = lua_tothread(L, idx);
  if (co == NULL || (parked && !task_holds_mine(co)))
    luaL_error(L, "the coroutine was replaced (debug library)");
  return co;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return resume_after(L, thread_at(L, 1, 1), 0);
}

/* coroutine.resume(co, ...) */
static int co_resume(lua_State *L) {
  lua_State *co = getco(L);
  int n = lua_gettop(L) - 1;
  if (task_holds(co)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "cannot resume non-suspended coroutine");
    return 2;
  }
  if (!lua_checkstack(co, n + 1)) { /* + 1: room for an error */
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "too many arguments to resume");
    return 2;
  }
  lua_xmove(L, co, n);
  return resume_after(L, co, n);
}

static int wrap_k(lua_State *L, int status, lua_KContext ctx);

static int wrap_after(lua_State *L, lua_State *co, int nargs) {
  int nres, parked, st = task_resume_coroutine(L, co, nargs, &nres, &parked);
  if (parked) return lua_yieldk(L, 0, 0, wrap_k);
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres)) {
      lua_pop(co, nres);
      return luaL_error(L, "too many results to resume");
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1); /* the error */
  int stat = lua_status(co);
  if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine: close its variables */
    stat = close_co(co, L);
    lua_xmove(co, L, 1);
  }
  if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) { /* add where, as Lua's wrap does */
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int wrap_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return wrap_after(L, thread_at(L, lua_upvalueindex(1), 1), 0);
}

static int wrap_call(lua_State *L) {
  lua_State *co = thread_at(L, lua_upvalueindex(1), 0);
  int n = lua_gettop(L);
  if (task_holds(co)) return luaL_error(L, "cannot resume non-suspended coroutine");
  if (!lua_checkstack(co, n + 1)) return luaL_error(L, "too many arguments to resume");
  lua_xmove(L, co, n);
  return wrap_after(L, co, n);
}

/* coroutine.wrap(f) */
static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrap_call, 1);
  return 1;
}

enum { COS_RUN, COS_DEAD, COS_YIELD, COS_NORM };
static const char *const statname[] = {"running", "dead", "suspended", "normal"};

static int status_of(lua_State *L, lua_State *co) {
  if (L == co) return COS_RUN;
  if (task_holds(co)) return COS_NORM; /* part of a task: running below, or parked in a wait */
  switch (lua_status(co)) {
  case LUA_YIELD: return COS_YIELD;
  case LUA_OK: {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar)) return COS_NORM;
    return lua_gettop(co) == 0 ? COS_DEAD : COS_YIELD;
  }
  default: return COS_DEAD;
  }
}

/* coroutine.status(co) */
static int co_status(lua_State *L) {
  lua_pushstring(L, statname[status_of(L, getco(L))]);
  return 1;
}

/* coroutine.close(co) */
static int co_close(lua_State *L) {
  lua_State *co = getco(L);
  int st = status_of(L, co);
  if (st != COS_DEAD && st != COS_YIELD)
    return luaL_error(L, "cannot close a %s coroutine", statname[st]);
  if (close_co(co, L) == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

void lcoro_install(lua_State *L) {
  static const luaL_Reg funcs[] = {{"resume", co_resume},
                                   {"wrap", co_wrap},
                                   {"status", co_status},
                                   {"close", co_close},
                                   {NULL, NULL}};
  if (lua_getglobal(L, "coroutine") == LUA_TTABLE) luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}
