/* lshared.c: scgi.shared.NAME: the Lua side of the shared dictionaries (shdict.c). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lbind.h"
#include "server.h"
#include "shdict.h"
#include "task.h"
#include "worker.h"

static const char SHARED_MT[] = "scgi.shared_dict"; /* its address: a dictionary's tag */
static const char KEYS_MT[] = "scgi.shared_keys";   /* ... and a malloc'd block's box's */

struct lshared {
  const char *tag; /* lbind.h */
  struct shdict *d;
  struct server *srv; /* the dictionary lives while this server runs */
};

static struct shdict *check_dict(lua_State *L) {
  struct lshared *u = (struct lshared *)lbind_check(L, 1, SHARED_MT, sizeof(struct lshared));
  struct rt *rt = rt_self();
  if (rt == NULL || rt->w->srv != u->srv)
    luaL_error(L, "scgi.shared.%s can only be used while its server runs", u->d->name);
  return u->d;
}

/* A malloc'd block held while Lua may raise (get, keys): its __gc frees it. */
struct block_box {
  const char *tag; /* lbind.h */
  char *p;
};

static const char *check_key(lua_State *L, size_t *len) {
  const char *k = luaL_checklstring(L, 2, len);
  luaL_argcheck(L, *len > 0, 2, "empty key");
  return k;
}

/* A Lua value as a stored value: strings, numbers, booleans, and nil (delete). */
static void check_value(lua_State *L, int idx, struct shvalue *v, int nil_ok) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    v->type = SH_STRING;
    v->s = lua_tolstring(L, idx, &v->len);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      v->type = SH_INTEGER;
      v->i = (int64_t)lua_tointeger(L, idx);
    } else {
      v->type = SH_NUMBER;
      v->d = (double)lua_tonumber(L, idx);
    }
    break;
  case LUA_TBOOLEAN:
    v->type = SH_BOOLEAN;
    v->i = lua_toboolean(L, idx);
    break;
  case LUA_TNIL:
  case LUA_TNONE:
    if (nil_ok) break;
    /* fall through */
  default: luaL_typeerror(L, idx, "string, number or boolean");
  }
}

static void push_value(lua_State *L, const struct shvalue *v) {
  switch (v->type) {
  case SH_STRING: lua_pushlstring(L, v->s, v->len); break;
  case SH_INTEGER: lua_pushinteger(L, (lua_Integer)v->i); break;
  case SH_NUMBER: lua_pushnumber(L, (lua_Number)v->d); break;
  case SH_BOOLEAN: lua_pushboolean(L, (int)v->i); break;
  default: lua_pushnil(L);
  }
}

static int push_error(lua_State *L, struct shdict *d, int rc, size_t need) {
  lua_pushnil(L);
  switch (rc) {
  case SH_NOT_FOUND: lua_pushliteral(L, "not found"); break;
  case SH_EXISTS: lua_pushliteral(L, "exists"); break;
  case SH_NOT_NUMBER: lua_pushliteral(L, "not a number"); break;
  case SH_TOO_LARGE:
    lua_pushfstring(L, "value does not fit: it needs %I bytes and scgi.shared.%s holds %I",
                    (lua_Integer)need, d->name, (lua_Integer)d->cap);
    break;
  default: lua_pushliteral(L, "no memory");
  }
  return 2;
}

/* dict:get(key): the value, or nil when absent or expired. */
static int sh_get(lua_State *L) {
  struct shdict *d = check_dict(L);
  size_t klen;
  const char *k = check_key(L, &klen);
  struct shvalue v;
  /* a string comes as a malloc'd copy: its box frees it if pushing it raises (memory) */
  struct block_box *box = (struct block_box *)lbind_new(L, KEYS_MT, sizeof *box, 0);
  int rc = shdict_get(d, k, klen, clock_now(), &v);
  if (rc == SH_NOT_FOUND) {
    lua_pushnil(L);
    return 1;
  }
  if (rc != SH_OK) return push_error(L, d, rc, 0);
  if (v.s) {
    box->p = (char *)v.s;
    lua_pushlstring(L, v.s, v.len);
    free(box->p);
    box->p = NULL;
    return 1;
  }
  push_value(L, &v);
  return 1;
}

static int set_mode(lua_State *L, int mode) {
  struct shdict *d = check_dict(L);
  size_t klen;
  const char *k = check_key(L, &klen);
  struct shvalue v;
  check_value(L, 3, &v, mode == 0);
  lua_Number ttl = luaL_optnumber(L, 4, 0);
  luaL_argcheck(L, ttl >= 0, 4, "negative ttl");
  int evicted = 0;
  int rc = shdict_set(d, k, klen, &v, (double)ttl, clock_now(), mode, &evicted);
  if (rc != SH_OK) {
    push_error(L, d, rc, klen + v.len + 64);
    lua_pushboolean(L, 0);
    lua_replace(L, -3);
    lua_pushboolean(L, 0);
    return 3;
  }
  lua_pushboolean(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, evicted > 0);
  return 3;
}

/* As OpenResty's shared dict: ok, err, forcible. ok is true, or false with err; forcible says
   whether live entries were evicted to make room. */
/* dict:set(key, value [, ttl]): stores the value; nil deletes. */
static int sh_set(lua_State *L) { return set_mode(L, 0); }
/* dict:add(key, value [, ttl]): like set, but false, "exists" when the key is there. */
static int sh_add(lua_State *L) { return set_mode(L, 1); }
/* dict:replace(key, value [, ttl]): like set, but false, "not found" when the key is absent. */
static int sh_replace(lua_State *L) { return set_mode(L, 2); }

/* dict:incr(key, n [, init]): adds n atomically; a missing key starts at init (else an error). */
static int sh_incr(lua_State *L) {
  struct shdict *d = check_dict(L);
  size_t klen;
  const char *k = check_key(L, &klen);
  struct shvalue by, init, out;
  if (lua_isnoneornil(L, 3)) {
    by.type = SH_INTEGER;
    by.i = 1;
  } else {
    luaL_checknumber(L, 3);
    check_value(L, 3, &by, 0);
  }
  int has_init = !lua_isnoneornil(L, 4);
  if (has_init) {
    luaL_checknumber(L, 4);
    check_value(L, 4, &init, 0);
  }
  int rc = shdict_incr(d, k, klen, &by, has_init ? &init : NULL, clock_now(), &out);
  if (rc != SH_OK) return push_error(L, d, rc, 0);
  push_value(L, &out);
  return 1;
}

static int sh_delete(lua_State *L) {
  struct shdict *d = check_dict(L);
  size_t klen;
  const char *k = check_key(L, &klen);
  shdict_delete(d, k, klen);
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc of a box that holds a malloc'd block while Lua may raise (get, keys). */
static int free_box(lua_State *L) {
  struct block_box *box = (struct block_box *)lbind_test(L, 1, KEYS_MT, sizeof *box);
  if (box) {
    free(box->p);
    box->p = NULL;
  }
  return 0;
}

/* dict:keys([max]): a list of the live keys, most recently used first (max 1024 by default,
   0 for all). */
static int sh_keys(lua_State *L) {
  struct shdict *d = check_dict(L);
  lua_Integer max = luaL_optinteger(L, 2, 1024);
  luaL_argcheck(L, max >= 0, 2, "negative count");
  size_t n, off = 0;
  struct block_box *box = (struct block_box *)lbind_new(L, KEYS_MT, sizeof *box, 0);
  box->p = shdict_keys(d, clock_now(), (size_t)max, &n); /* the box frees it if Lua raises */
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    size_t len;
    memcpy(&len, box->p + off, sizeof len);
    lua_pushlstring(L, box->p + off + sizeof len, len);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    off += sizeof len + len;
  }
  free(box->p);
  box->p = NULL;
  return 1;
}

static int sh_flush_all(lua_State *L) {
  shdict_flush(check_dict(L));
  return 0;
}

/* dict:usage(): bytes used, bytes of capacity, number of entries. */
static int sh_usage(lua_State *L) {
  size_t used, cap, count;
  shdict_usage(check_dict(L), &used, &cap, &count);
  lua_pushinteger(L, (lua_Integer)used);
  lua_pushinteger(L, (lua_Integer)cap);
  lua_pushinteger(L, (lua_Integer)count);
  return 3;
}

static int sh_tostring(lua_State *L) {
  struct lshared *u = (struct lshared *)lbind_check(L, 1, SHARED_MT, sizeof(struct lshared));
  lua_pushfstring(L, "scgi.shared.%s", u->d->name);
  return 1;
}

/* Creates the dictionary metatables (once per state, from luaopen_scgi_core). */
void lshared_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"get", sh_get},     {"set", sh_set},
                                     {"add", sh_add},     {"replace", sh_replace},
                                     {"incr", sh_incr},   {"delete", sh_delete},
                                     {"keys", sh_keys},   {"get_keys", sh_keys},
                                     {"usage", sh_usage}, {"flush_all", sh_flush_all},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SHARED_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sh_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, KEYS_MT)) {
    lua_pushcfunction(L, free_box);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

/* core.shared(name): the dictionary declared with --shared NAME:SIZE, or nil. */
int lshared_get(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  struct rt *rt = rt_self();
  struct server *s = rt ? rt->w->srv : NULL;
  struct shdict *d = NULL;
  for (int i = 0; s && i < s->ndicts; i++)
    if (strcmp(s->dicts[i]->name, name) == 0) d = s->dicts[i];
  if (d == NULL) {
    lua_pushnil(L);
    return 1;
  }
  struct lshared *u = (struct lshared *)lbind_new(L, SHARED_MT, sizeof *u, 0);
  u->d = d;
  u->srv = s;
  return 1;
}
