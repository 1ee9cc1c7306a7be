/* lclient.c: the scgi.client object (write, read, flush, close, closed, budget; respond in Lua,
   core/client.lua), and the handler's arguments: the headers table and the client. */
#include <errno.h>
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#include "client_lua.h"
#include "conn.h"
#include "lbind.h"
#include "request.h"
#include "task.h"

#define CTX_SHIFT 40

static const char CLIENT_MT[] = "scgi.client"; /* its address is the client's tag (lbind.h) */
static const char client_mt_key = 0;           /* its address keys the metatable in the registry */

/* Argument 1 as a client, by its tag (lbind.h): a metatable alone can be forged. */
static struct client_box *check_box(lua_State *L) {
  return (struct client_box *)lbind_check(L, 1, CLIENT_MT, sizeof(struct client_box));
}

/* The live request behind argument 1; raises if the client is closed. */
static struct request *check_client(lua_State *L) {
  struct client_box *b = check_box(L);
  if (b->r == NULL) luaL_error(L, "attempt to use a closed scgi client");
  return b->r;
}

/* The request behind argument 1 when a read or write continues after its wait; NULL (with nil,
   "closed" pushed) when the client was closed meanwhile (client:close from another task). */
static struct request *resumed_client(lua_State *L, int status) {
  struct client_box *b = check_box(L);
  if (b->r != NULL || status != LUA_YIELD) return check_client(L);
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return NULL;
}

/* The running task, if it may wait on r's connection. */
static struct task *waiter(lua_State *L, struct request *r, const char *what) {
  struct task *t = task_running(L, what);
  if (t->req != r) luaL_error(L, "%s: the client belongs to another request", what);
  if (r->conn_waiter && r->conn_waiter != t) luaL_error(L, "%s: the client is busy", what);
  return t;
}

/* nil, message, code for a web server that went away or stalled. */
static int push_closed(lua_State *L, struct conn *c) {
  lua_pushnil(L);
  lua_pushstring(L, c->err == ETIMEDOUT ? "timeout" : "closed");
  lua_pushinteger(L, c->err > 0 ? c->err : EPIPE);
  return 3;
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  int n = lua_gettop(L), i = (int)(ctx >> CTX_SHIFT);
  struct request *r = resumed_client(L, status);
  if (r == NULL) return 2;
  size_t off = (size_t)(ctx & (((lua_KContext)1 << CTX_SHIFT) - 1));
  for (; i <= n; i++, off = 0) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    int rc = conn_write(r->conn, s, len, &off);
    if (rc == CONN_GONE) return push_closed(L, r->conn);
    if (rc == CONN_WAIT)
      return task_wait_conn(L, waiter(L, r, "client:write"), EV_WRITE,
                            ((lua_KContext)i << CTX_SHIFT) | (lua_KContext)off, write_k);
  }
  lua_settop(L, 1);
  return 1;
}

/* client:write(...): strings or numbers, buffered; parks while the socket is full. */
static int client_write(lua_State *L) {
  struct request *r = check_client(L);
  int n = lua_gettop(L);
  for (int i = 2; i <= n; i++)
    luaL_checklstring(L, i, NULL);
  if (task_slice_over(L))
    return task_yield_slice(L, waiter(L, r, "client:write"), (lua_KContext)2 << CTX_SHIFT, write_k);
  return write_k(L, LUA_OK, (lua_KContext)2 << CTX_SHIFT);
}

static int flush_k(lua_State *L, int status, lua_KContext ctx) {
  struct request *r = resumed_client(L, status);
  if (r == NULL) return 2;
  int rc = conn_flush(r->conn);
  if (rc == CONN_GONE) return push_closed(L, r->conn);
  if (rc == CONN_WAIT)
    return task_wait_conn(L, waiter(L, r, "client:flush"), EV_WRITE, ctx, flush_k);
  lua_settop(L, 1);
  return 1;
}

/* client:flush(): sends everything buffered; parks until the socket took it. */
static int client_flush(lua_State *L) {
  check_client(L);
  return flush_k(L, LUA_OK, 0);
}

/* How many body bytes the read in mode wants now (0 when it is answered: pushed already). */
static size_t read_want(lua_State *L, struct conn *c, int mode) {
  uint64_t left = conn_body_left(c);
  const char *p;
  size_t avail = conn_body(c, &p);
  if (mode == 'n') {
    uint64_t n = (uint64_t)lua_tointeger(L, 2);
    if (left == 0) lua_pushnil(L);
    return left == 0 ? 0 : n < left ? (size_t)n : (size_t)left;
  }
  if (mode == 'a') {
    if (left == 0) lua_pushliteral(L, "");
    return (size_t)left;
  }
  const char *nl = memchr(p, '\n', avail);
  if (nl != NULL) {
    size_t len = (size_t)(nl - p) + 1;
    lua_pushlstring(L, p, mode == 'L' ? len : len - 1);
    conn_consume(c, len);
    return 0;
  }
  if (left == 0) lua_pushnil(L);
  return left == 0 ? 0 : avail == left ? avail : avail + 1;
}

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  struct request *r = resumed_client(L, status);
  if (r == NULL) return 2;
  struct conn *c = r->conn;
  for (;;) {
    const char *p;
    size_t want = read_want(L, c, (int)ctx);
    if (want == 0) return 1;
    if (conn_body(c, &p) >= want) {
      lua_pushlstring(L, p, want);
      conn_consume(c, want);
      return 1;
    }
    int rc = conn_fill(c, want);
    if (rc == CONN_GONE) return push_closed(L, c);
    if (rc == CONN_WAIT)
      return task_wait_conn(L, waiter(L, r, "client:read"), EV_READ, ctx, read_k);
  }
}

/* client:read(n | "a" | "l" | "L"): body bytes, parking until they arrive; nil at the end. */
static int client_read(lua_State *L) {
  struct request *r = check_client(L);
  const char *p;
  int mode;
  if (lua_isnoneornil(L, 2)) {
    mode = 'l';
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 0, 2, "negative count");
    if (n == 0) {
      if (conn_body_left(r->conn) == 0)
        lua_pushnil(L);
      else
        lua_pushliteral(L, "");
      return 1;
    }
    mode = 'n';
  } else {
    const char *f = luaL_checkstring(L, 2);
    if (*f == '*') f++;
    if ((*f != 'a' && *f != 'l' && *f != 'L') || f[1] != '\0')
      return luaL_argerror(L, 2, "invalid format");
    mode = *f;
  }
  lua_settop(L, 2);
  if (r->conn->gone && conn_body(r->conn, &p) == 0) return push_closed(L, r->conn);
  if (task_slice_over(L)) return task_yield_slice(L, waiter(L, r, "client:read"), mode, read_k);
  return read_k(L, LUA_OK, mode);
}

/* client:close(): ends the response now; the handler may go on with other work. */
static int client_close(lua_State *L) {
  request_close(check_client(L));
  lua_pushboolean(L, 1);
  return 1;
}

/* __close and __gc: like close, but a no-op on a closed client (or another value given the
   client's metatable). */
static int client_gc(lua_State *L) {
  struct client_box *b = (struct client_box *)lbind_test(L, 1, CLIENT_MT, sizeof *b);
  if (b && b->r) request_close(b->r);
  return 0;
}

/* client:closed(): true once the request ended or the web server went away. */
static int client_closed(lua_State *L) {
  struct client_box *b = check_box(L);
  lua_pushboolean(L, b->r == NULL || !conn_alive(b->r->conn));
  return 1;
}

/* client:budget(seconds): the request may run that long from now (0: no limit), for streams
   such as Server-Sent Events that outlive --request-timeout. Returns the client. */
static int client_budget(lua_State *L) {
  struct request *r = check_client(L);
  lua_Number secs = luaL_checknumber(L, 2);
  luaL_argcheck(L, secs >= 0 && secs < 1e9, 2, "seconds out of range");
  request_set_budget(r, (double)secs);
  lua_settop(L, 1);
  return 1;
}

static int client_tostring(lua_State *L) {
  struct client_box *b = check_box(L);
  if (b->r == NULL)
    lua_pushliteral(L, "scgi.client (closed)");
  else
    lua_pushfstring(L, "scgi.client (%s %s)", b->r->method, request_uri(b->r));
  return 1;
}

/* Creates the client metatable (once per state, from luaopen_scgi_core); leaves its methods
   table on the stack. */
void lclient_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"write", client_write},
      {"read", client_read},
      {"flush", client_flush},
      {"close", client_close},
      {"closed", client_closed},
      {"budget", client_budget},
      {NULL, NULL},
  };
  /* __gc is part of the contract (a client collected while attached ends its response), though a
     request holds its client until it ends; bench/PROFILE.md measures what it costs. */
  static const luaL_Reg metamethods[] = {
      {"__gc", client_gc},
      {"__close", client_gc},
      {"__tostring", client_tostring},
      {NULL, NULL},
  };
  if (!luaL_newmetatable(L, CLIENT_MT)) {
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    return;
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &client_mt_key);
  lua_pushvalue(L, -1);
  luaL_setfuncs(L, metamethods, 1); /* upvalue 1: the metatable (check_box) */
  lua_createtable(L, 0, sizeof methods / sizeof methods[0] - 1);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  if (luaL_loadbuffer(L, client_lua, sizeof client_lua - 1, "=scgi/client.lua") != LUA_OK)
    lua_error(L);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0); /* adds respond and the reason phrases */
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2);
}

/* Pushes the headers table; repeated names (nginx 1.22 sends one pair per repeated HTTP header
   line) are joined in arrival order, HTTP_COOKIE with "; " and the others with ", ", as nginx
   1.23 and RFC 9110 section 5.3 join repeated fields. */
static void push_headers(lua_State *L, struct request *r) {
  const struct scgi_header *h = r->hdrs;
  size_t n = r->nhdrs;
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    app_push_header(L, r->app, i, 0, h[i].name, h[i].name_len);
    if (r->repeated) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) != LUA_TNIL) {
        int cookie = h[i].name_len == 11 && memcmp(h[i].name, "HTTP_COOKIE", 11) == 0;
        lua_pushstring(L, cookie ? "; " : ", ");
        lua_pushlstring(L, h[i].value, h[i].value_len);
        lua_concat(L, 3);
        lua_rawset(L, -3);
        continue;
      }
      lua_pop(L, 1);
    }
    app_push_header(L, r->app, i, 1, h[i].value, h[i].value_len);
    lua_rawset(L, -3);
  }
}

/* Pushes the client (which stays there while the handler runs: its request holds it), then the
   handler and its arguments (the headers table and the client); returns how many arguments. */
int lclient_push_args(lua_State *co, struct request *r) {
  struct client_box *b = (struct client_box *)lua_newuserdatauv(co, sizeof *b, 0);
  b->tag = CLIENT_MT;
  b->r = r;
  lua_rawgetp(co, LUA_REGISTRYINDEX, &client_mt_key); /* faster than a lookup by name */
  lua_setmetatable(co, -2);
  r->client = b;
  lua_rawgeti(co, LUA_REGISTRYINDEX, r->app->handler_ref);
  push_headers(co, r);
  r->hdrs = NULL;
  lua_pushvalue(co, -3);
  return 2;
}
