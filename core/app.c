/* app.c: a worker's Lua states: the allocator and its limit, warnings, module paths, loading the
   app file, reference counts, and the pools of coroutines and header strings a state keeps. */
#include "app.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The allocator of a worker's states: counts the bytes in use and, while a request runs, refuses
   to go over --memory-limit (Lua then raises "not enough memory" in that request). */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct app_mem *m = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    m->used -= old;
    free(ptr);
    return NULL;
  }
  if (nsize > old && m->limited && m->limit && m->used + (nsize - old) > m->limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p == NULL) return NULL;
  m->used = m->used - old + nsize;
  return p;
}

/* Lua's warnings (errors in __gc metamethods, warn()) go to the log; pieces are joined. */
static void warnf(void *ud, const char *msg, int tocont) {
  struct app *a = ud;
  size_t n = strlen(a->warn_buf);
  if (n == 0 && !tocont && msg[0] == '@') return; /* control messages such as "@on" */
  snprintf(a->warn_buf + n, sizeof a->warn_buf - n, "%s", msg);
  if (tocont) return;
  slog_at(LOG_WARN, "worker %d: Lua warning: %s", a->worker_id, a->warn_buf);
  a->warn_buf[0] = '\0';
}

static int panic(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
  slog_at(LOG_ERROR, "unprotected Lua error: %s", msg);
  return 0;
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Pushes the message of the error value at idx, as a string, whatever the value is: its own
   string, its __tostring (called protected: one that raises is reported as such), or its type. */
void app_push_error_message(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    lua_tostring(L, -1);
    return;
  }
  if (luaL_getmetafield(L, idx, "__tostring") == LUA_TNIL) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
    return;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, tostring_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) return;
  const char *why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (why)
    lua_pushfstring(L, "(error object is a %s value; its __tostring raised: %s)",
                    luaL_typename(L, idx), why);
  else
    lua_pushfstring(L, "(error object is a %s value; its __tostring raised a %s value)",
                    luaL_typename(L, idx), luaL_typename(L, -1));
  lua_remove(L, -2);
}

/* Message handler for loading the app: the message and a traceback (as lua.c does). */
int app_msghandler(lua_State *L) {
  app_push_error_message(L, 1);
  luaL_traceback(L, L, lua_tostring(L, -1), 1);
  return 1;
}

/* Puts the app's directory first on package.path, then the server's module directories, then
   the path Lua made from LUA_PATH_5_4 or LUA_PATH (";;" expanded as lua5.4 does) or the
   caller's path. */
static void set_paths(lua_State *L, const struct app_env *env, const char *app) {
  const char *slash = strrchr(app, '/');
  lua_getglobal(L, "package");
  if (slash)
    lua_pushlstring(L, app, (size_t)(slash - app));
  else
    lua_pushliteral(L, ".");
  const char *dir = lua_tostring(L, -1);
  if (env->lua_path)
    lua_pushstring(L, env->lua_path);
  else
    lua_getfield(L, -2, "path");
  if (env->lua_path_prefix)
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s;%s", dir, dir, env->lua_path_prefix,
                    lua_tostring(L, -1));
  else
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -4, "path");
  lua_pop(L, 2);
  if (env->lua_cpath) {
    lua_pushstring(L, env->lua_cpath);
    lua_setfield(L, -2, "cpath");
  }
  lua_pop(L, 1);
}

/* ---- the sources an app loaded ---- */

struct app_file {
  char *name; /* the module's name (require), or NULL for a file loaded by path */
  char *path, *bytes;
  size_t len;
};

struct app_code {
  atomic_uint refs;
  int n, cap;
  struct app_file *f;
};

void app_code_ref(struct app_code *c) {
  if (c) atomic_fetch_add(&c->refs, 1);
}

void app_code_unref(struct app_code *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) > 1) return;
  for (int i = 0; i < c->n; i++) {
    free(c->f[i].name);
    free(c->f[i].path);
    free(c->f[i].bytes);
  }
  free(c->f);
  free(c);
}

/* The kept file of module name (or, name NULL, of path), or NULL. */
static const struct app_file *code_find(const struct app_code *c, const char *name,
                                        const char *path) {
  for (int i = 0; c && i < c->n; i++) {
    const struct app_file *f = &c->f[i];
    if (name ? f->name && strcmp(f->name, name) == 0 : !f->name && strcmp(f->path, path) == 0)
      return f;
  }
  return NULL;
}

/* Keeps bytes (taken over: freed here if they cannot be kept) as the source of name or path. */
static void code_add(struct app_code *c, const char *name, const char *path, char *bytes,
                     size_t len) {
  if (code_find(c, name, path) == NULL && c->n == c->cap) {
    int cap = c->cap ? c->cap * 2 : 8;
    struct app_file *f = realloc(c->f, (size_t)cap * sizeof *f);
    if (f) {
      c->f = f;
      c->cap = cap;
    }
  }
  if (code_find(c, name, path) || c->n == c->cap) {
    free(bytes);
    return;
  }
  struct app_file *f = &c->f[c->n];
  f->name = name ? strdup(name) : NULL;
  f->path = strdup(path);
  f->bytes = bytes;
  f->len = len;
  if (f->path == NULL || (name && f->name == NULL)) {
    free(f->name);
    free(f->path);
    free(bytes);
    return;
  }
  c->n++;
}

/* Reads the whole file; NULL with errno set. */
static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL) return NULL;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 16384;
      char *b = realloc(buf, cap);
      if (b == NULL) goto fail;
      buf = b;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) goto fail;
  fclose(f);
  *len = n;
  return buf;
fail:
  free(buf);
  fclose(f);
  errno = errno ? errno : EIO;
  return NULL;
}

/* Loads a file's bytes as luaL_loadfilex does: a UTF-8 mark and a first line starting with '#'
   are skipped (its newline kept, so line numbers stay), text or binary as mode allows. */
static int load_bytes(lua_State *L, const char *b, size_t n, const char *path, const char *mode) {
  if (n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0) b += 3, n -= 3;
  if (n > 0 && b[0] == '#')
    while (n > 0 && b[0] != '\n')
      b++, n--;
  lua_pushfstring(L, "@%s", path);
  int rc = luaL_loadbufferx(L, b, n, lua_tostring(L, -1), mode);
  lua_remove(L, -2);
  return rc;
}

/* Loads the Lua file of module name (NULL: a file by path) from what the app kept, or from disk
   (kept while the app's file runs); pushes the chunk, or the error message. */
static int load_source(lua_State *L, struct app *a, const char *name, const char *path,
                       const char *mode) {
  const struct app_file *f = code_find(a->code, name, path);
  if (f) return load_bytes(L, f->bytes, f->len, f->path, mode);
  size_t len;
  char *bytes = read_all(path, &len);
  if (bytes == NULL) {
    lua_pushfstring(L, "cannot open %s: %s", path, strerror(errno));
    return LUA_ERRFILE;
  }
  int rc = load_bytes(L, bytes, len, path, mode);
  if (rc == LUA_OK && a->recording)
    code_add(a->code, name, path, bytes, len);
  else
    free(bytes);
  return rc;
}

/* The app a loader closure serves, from its first upvalue: a box only C makes, with a tag no Lua
   value can forge (debug.setupvalue may put anything there: it raises then, never crashes). */
static const char app_box_tag[] = "scgi.app";
struct app_box {
  const char *tag;
  struct app *a;
};

static void push_app_box(lua_State *L, struct app *a) {
  struct app_box *b = (struct app_box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->tag = app_box_tag;
  b->a = a;
}

static struct app *app_up(lua_State *L) {
  int i = lua_upvalueindex(1);
  struct app_box *b = (struct app_box *)lua_touserdata(L, i);
  if (lua_type(L, i) != LUA_TUSERDATA || lua_rawlen(L, i) != sizeof *b || b->tag != app_box_tag)
    luaL_error(L, "scgi-lua's loader lost its app (an upvalue was replaced)");
  return b->a;
}

/* package.searchers[2] (Lua modules), loading from what the app kept when it has the module;
   reports the file (for --reload-on-change). Upvalue: the app. */
static int code_searcher(lua_State *L) {
  struct app *a = app_up(L);
  const struct app_env *env = (const struct app_env *)(a + 1);
  const char *name = luaL_checkstring(L, 1);
  const struct app_file *f = code_find(a->code, name, NULL);
  if (f) {
    lua_pushstring(L, f->path);
  } else {
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) return 1; /* the places it looked in */
    lua_pop(L, 1);
  }
  const char *path = lua_tostring(L, -1);
  if (load_source(L, a, name, path, NULL) != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path,
                      lua_tostring(L, -1));
  if (env->on_file) env->on_file(path, env->ud);
  lua_pushstring(L, path);
  return 2;
}

/* loadfile and dofile by path read what the app kept (standard input: Lua's own). Upvalues: the
   app, Lua's function. */
static int code_loadfile(lua_State *L) {
  struct app *a = app_up(L);
  const char *path = luaL_optstring(L, 1, NULL), *mode = luaL_optstring(L, 2, NULL);
  int env = !lua_isnone(L, 3) ? 3 : 0;
  if (path == NULL) {
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  if (load_source(L, a, NULL, path, mode) != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

static int dofile_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

static int code_dofile(lua_State *L) {
  struct app *a = app_up(L);
  const char *path = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (path == NULL) {
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_insert(L, 1);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L);
  }
  if (load_source(L, a, NULL, path, NULL) != LUA_OK) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_k);
  return dofile_k(L, 0, 0);
}

static void install_code(lua_State *L, struct app *a) {
  lua_getglobal(L, "package");
  if (lua_getfield(L, -1, "searchers") == LUA_TTABLE) {
    push_app_box(L, a);
    lua_pushcclosure(L, code_searcher, 1);
    lua_rawseti(L, -2, 2);
  }
  lua_pop(L, 2);
  push_app_box(L, a);
  lua_getglobal(L, "loadfile");
  lua_pushcclosure(L, code_loadfile, 2);
  lua_setglobal(L, "loadfile");
  push_app_box(L, a);
  lua_getglobal(L, "dofile");
  lua_pushcclosure(L, code_dofile, 2);
  lua_setglobal(L, "dofile");
}

static int run(lua_State *L, const struct app_env *env, int nargs, int nres) {
  if (env->run) return env->run(L, nargs, nres, env->ud);
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, app_msghandler);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  return rc;
}

/* --wsapi: replaces the value on top (a WSAPI app) by require("scgi.wsapi").wrap_app(value). */
static int wrap_wsapi(lua_State *L, const struct app_env *env, const char *app) {
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "scgi.wsapi");
  int rc = run(L, env, 1, 1);
  if (rc != LUA_OK) return rc;
  lua_getfield(L, -1, "wrap_app");
  lua_pushvalue(L, top);
  lua_pushstring(L, app);
  rc = run(L, env, 2, 1);
  if (rc != LUA_OK) return rc;
  lua_replace(L, top);
  lua_settop(L, top);
  return LUA_OK;
}

static struct app *app_alloc(const struct app_env *env) {
  struct app *a = calloc(1, sizeof *a + sizeof *env);
  if (a == NULL) return NULL;
  a->worker_id = env->worker_id;
  a->refs = 1;
  memcpy(a + 1, env, sizeof *env); /* the searcher wrapper's copy of env lives with the app */
  return a;
}

struct app *app_new(const struct app_env *env, const char *path, char *err, size_t errlen) {
  struct app *a = app_alloc(env);
  lua_State *L = a ? lua_newstate(lalloc, env->mem) : NULL;
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state: out of memory");
    free(a);
    return NULL;
  }
  a->L = L;
  a->owned = 1;
  memset(lua_getextraspace(L), 0, LUA_EXTRASPACE); /* copied to every coroutine */
  lua_atpanic(L, panic);
  lua_setwarnf(L, warnf, a);
  luaL_openlibs(L);
  a->code = env->code;
  app_code_ref(a->code);
  if (a->code == NULL && (a->code = calloc(1, sizeof *a->code)) != NULL) {
    atomic_init(&a->code->refs, 1);
    a->recording = 1;
  }
  if (a->code == NULL) {
    snprintf(err, errlen, "cannot create a Lua state: out of memory");
    goto fail;
  }
  install_code(L, a);
  if (env->prepare) env->prepare(L, env->ud);
  set_paths(L, env, path);
  if (env->loading) env->loading(a, env->ud);
  int base = lua_gettop(L);
  if (load_source(L, a, NULL, path, NULL) != LUA_OK || run(L, env, 0, LUA_MULTRET) != LUA_OK) {
    snprintf(err, errlen, "cannot load %s: %s", path,
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)");
    goto fail;
  }
  if (env->wsapi && lua_gettop(L) > base) {
    lua_settop(L, base + 1);
    if (wrap_wsapi(L, env, path) != LUA_OK) {
      snprintf(err, errlen, "%s is not a WSAPI application: %s", path, lua_tostring(L, -1));
      goto fail;
    }
  }
  if (!lua_isfunction(L, base + 1)) {
    snprintf(err, errlen, "%s must return the handler function, but it returned %s", path,
             lua_gettop(L) == base ? "nothing" : luaL_typename(L, base + 1));
    goto fail;
  }
  lua_settop(L, base + 1);
  a->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, base);
  a->recording = 0;
  if (env->loading) env->loading(NULL, env->ud);
  if (env->generational)
    lua_gc(L, LUA_GCGEN, 0, 0);
  else
    lua_gc(L, LUA_GCINC, 0, 0, 0); /* see docs/design.md: GC */
  return a;
fail:
  if (env->failed) env->failed(a, env->ud);
  lua_close(L);
  app_code_unref(a->code);
  free(a);
  return NULL;
}

struct app *app_wrap(const struct app_env *env, lua_State *L, int handler_ref) {
  struct app *a = app_alloc(env);
  if (a == NULL) return NULL;
  a->L = L;
  a->handler_ref = handler_ref;
  return a;
}

void app_ref(struct app *a) { a->refs++; }

void app_unref(struct app *a) {
  if (a == NULL || --a->refs > 0) return;
  if (a->owned) {
    lua_close(a->L);
  } else { /* a caller's state lives on: give back what the app held in it */
    for (int i = 0; i < a->nidle; i++)
      luaL_unref(a->L, LUA_REGISTRYINDEX, a->idle_ref[i]);
    for (int i = 0; i < APP_NAME_SLOTS; i++) {
      if (a->names[i].ref > 0) luaL_unref(a->L, LUA_REGISTRYINDEX, a->names[i].ref);
      if (a->values[i].ref > 0) luaL_unref(a->L, LUA_REGISTRYINDEX, a->values[i].ref);
    }
  }
  app_code_unref(a->code);
  free(a);
}

void app_adopt(struct app *a, struct app_mem *mem) {
  void *ud;
  lua_Alloc f = lua_getallocf(a->L, &ud);
  struct app_mem *from = ud;
  if (f != lalloc || from == mem) return;
  mem->used += from->used;
  from->used = 0;
  lua_setallocf(a->L, lalloc, mem);
}

lua_State *app_thread(struct app *a, int *ref) {
  if (a->nidle > 0) {
    a->nidle--;
    *ref = a->idle_ref[a->nidle];
    return a->idle[a->nidle];
  }
  lua_State *co = lua_newthread(a->L);
  *ref = luaL_ref(a->L, LUA_REGISTRYINDEX);
  return co;
}

void app_release_thread(struct app *a, lua_State *co, int ref, int reusable) {
  if (reusable && a->nidle < APP_CO_POOL && lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    if (lua_gethook(co)) lua_sethook(co, NULL, 0, 0); /* one the guard armed but never ran */
    a->idle[a->nidle] = co; /* a finished coroutine runs the next request */
    a->idle_ref[a->nidle++] = ref;
  } else {
    luaL_unref(a->L, LUA_REGISTRYINDEX, ref);
  }
}

void app_push_header_slow(lua_State *co, struct str_slot *slot, const char *p, size_t len) {
  lua_pushlstring(co, p, len);
  if (slot == NULL || len > sizeof slot->bytes) return;
  if (slot->ref > 0) luaL_unref(co, LUA_REGISTRYINDEX, slot->ref);
  lua_pushvalue(co, -1);
  slot->ref = luaL_ref(co, LUA_REGISTRYINDEX);
  slot->len = len;
  memcpy(slot->bytes, p, len);
}
