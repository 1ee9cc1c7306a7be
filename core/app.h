/* app.h: a worker's Lua states: building one, loading the app file in it, the allocator and its
   limit, Lua's warnings, and the pools a state keeps (finished coroutines, header strings). An
   app is reference-counted: after a reload, the old one lives until its last request ends. */
#ifndef SCGI_APP_H
#define SCGI_APP_H

#include <lua.h>
#include <stddef.h>
#include <string.h>

#define APP_CO_POOL 64    /* finished coroutines an app keeps for the next requests */
#define APP_NAME_SLOTS 48 /* header positions whose name and value strings an app keeps */

/* Lua memory of a worker's states, counted by their allocator. */
struct app_mem {
  size_t used, limit; /* limit 0: none */
  int limited;        /* 1 while a request runs: allocations over the limit fail */
};

struct app;
/* The source bytes of every Lua file an app loaded at load time (the app file, modules through
   require, loadfile and dofile): a recycled state runs them, not what is on disk now. */
struct app_code;

/* How to build a state: where from, and the caller's steps around loading the app file. */
struct app_env {
  int worker_id;
  struct app_mem *mem;
  const char *lua_path, *lua_cpath;        /* package.path and cpath, or NULL for Lua's */
  const char *lua_path_prefix;             /* put before package.path, or NULL */
  int wsapi;                               /* the app file returns a WSAPI application */
  int generational;                        /* the GC mode */
  void (*prepare)(lua_State *L, void *ud); /* before the file runs: C modules, metatables */
  int (*run)(lua_State *L, int nargs, int nres, void *ud); /* a protected call, under the guard */
  void (*on_file)(const char *path, void *ud); /* a Lua module file was loaded by require */
  void (*loading)(struct app *a, void *ud);    /* a (before its file runs), then NULL after */
  void (*failed)(struct app *a, void *ud);     /* a failed to load: about to be closed */
  struct app_code *code; /* load these sources (a recycle), or NULL: read the files, keep them */
  void *ud;
};

struct str_slot {
  int ref; /* registry reference of the Lua string, 0 when empty */
  size_t len;
  char bytes[40];
};

struct app {
  lua_State *L;
  int handler_ref;
  unsigned refs;
  int owned; /* lua_close it at the last reference (not a caller's state) */
  int worker_id;
  int nidle;
  lua_State *idle[APP_CO_POOL]; /* coroutines that returned normally, ready for reuse */
  int idle_ref[APP_CO_POOL];
  struct str_slot names[APP_NAME_SLOTS], values[APP_NAME_SLOTS];
  char warn_buf[512];    /* a Lua warning being assembled */
  struct app_code *code; /* the sources it loaded at load time (shared with its recycles) */
  int recording;         /* its file runs: the Lua files it loads are kept in code */
};

/* Builds a state, loads the app file in it and keeps the handler it returns; NULL with a
   message naming the file (and line) in err. */
struct app *app_new(const struct app_env *env, const char *path, char *err, size_t errlen);
/* An app around a state the caller owns (a function handler given to handle_requests). */
struct app *app_wrap(const struct app_env *env, lua_State *L, int handler_ref);
void app_ref(struct app *a);
void app_unref(struct app *a);
/* A state built on another thread joins a worker: from now on its allocator counts in mem. */
void app_adopt(struct app *a, struct app_mem *mem);
void app_code_ref(struct app_code *c);
void app_code_unref(struct app_code *c);

/* Pushes the message of the error value at idx as a string, calling its __tostring protected. */
void app_push_error_message(lua_State *L, int idx);
/* A message handler: the error's message (as above) and a traceback, as lua.c's. */
int app_msghandler(lua_State *L);

/* A coroutine for a new task (from the pool, or new) and its registry reference. */
lua_State *app_thread(struct app *a, int *ref);
/* Gives a task's coroutine back: kept for reuse if it finished cleanly, else unreferenced. */
void app_release_thread(struct app *a, lua_State *co, int ref, int reusable);
/* Pushes a header's name or value through the app's cache slot for its position: a web server
   sends the same names in the same order every time, and many values repeat (SCGI, SERVER_NAME,
   HTTP_HOST, ...), so a slot keeps the Lua string last seen at a position and reuses it when the
   bytes match: a memcmp instead of hashing and interning the string again. */
void app_push_header_slow(lua_State *co, struct str_slot *slot, const char *p, size_t len);
static inline void app_push_header(lua_State *co, struct app *a, size_t pos, int value,
                                   const char *p, size_t len) {
  struct str_slot *slot = NULL;
  if (pos < APP_NAME_SLOTS) {
    slot = value ? &a->values[pos] : &a->names[pos];
    if (slot->ref > 0 && slot->len == len && memcmp(slot->bytes, p, len) == 0) {
      lua_rawgeti(co, LUA_REGISTRYINDEX, slot->ref);
      return;
    }
  }
  app_push_header_slow(co, slot, p, len);
}

#endif
