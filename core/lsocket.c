/* lsocket.c: scgi.connect: cooperative TCP and unix sockets with LuaSocket's calls and return
   conventions (core/sock.c does the I/O); a call that would block parks the running task. */
#include <errno.h>
#include <lauxlib.h>
#include <string.h>

#include "lbind.h"
#include "request.h"
#include "rt.h"
#include "sock.h"
#include "task.h"
#include "worker.h"

#define SOCK_MT "scgi.socket"

struct lsock {
  struct sock s;
  struct task *waiter; /* the task parked on this socket */
};

static struct lsock *check_sock(lua_State *L) {
  return (struct lsock *)luaL_checkudata(L, 1, SOCK_MT);
}

static struct lsock *check_open(lua_State *L) {
  struct lsock *u = check_sock(L);
  if (u->s.fd < 0) luaL_error(L, "attempt to use a closed socket");
  return u;
}

static void on_ready(struct sock *s) {
  struct lsock *u = s->owner;
  struct task *t = u->waiter;
  u->waiter = NULL;
  if (t) task_wake(t);
}

static void cancel(void *arg) {
  struct lsock *u = arg;
  sock_unwait(&u->s);
  u->waiter = NULL;
}

/* Parks the running task until the socket is ready for events or its timeout runs out. */
static int park(lua_State *L, struct lsock *u, int events, lua_KContext ctx, lua_KFunction k) {
  struct task *t = task_running(L, "a cooperative socket");
  if (u->waiter != NULL && u->waiter != t)
    return luaL_error(L, "the socket is in use by another request");
  task_check_wait(L, t);
  u->waiter = t;
  sock_wait(&u->s, t->req->rt->w->loop, events);
  return task_wait_other(L, t, cancel, u, ctx, k);
}

static int push_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = (struct lsock *)lua_touserdata(L, -1);
  (void)status;
  (void)ctx;
  if (u->s.fd < 0) return push_fail(L, "closed");
  if (sock_connected(&u->s) != SOCK_DONE) return push_fail(L, sock_error(u->s.err));
  return 1;
}

/* scgi.connect(host, port) or scgi.connect("/unix/path"): a connected socket, or nil, message. */
int lsocket_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1), *why = NULL;
  struct sockaddr_storage ss;
  socklen_t sl;
  task_running(L, "scgi.connect");
  if (lua_isnoneornil(L, 2)) {
    luaL_argcheck(L, sock_unix_addr(host, &ss, &sl) == 0, 1, "unix socket path too long");
  } else {
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
    if (sock_resolve(host, (int)port, &ss, &sl, &why) < 0) return push_fail(L, why);
  }
  struct lsock *u = (struct lsock *)lua_newuserdatauv(L, sizeof *u, 0);
  sock_init(&u->s, on_ready, u);
  u->waiter = NULL;
  luaL_setmetatable(L, SOCK_MT);
  int rc = sock_connect(&u->s, (struct sockaddr *)&ss, sl);
  if (rc == SOCK_GONE) return push_fail(L, sock_error(u->s.err));
  if (rc == SOCK_WAIT) return park(L, u, EV_WRITE, 0, connect_k);
  return 1;
}

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = check_sock(L);
  size_t len, i = (size_t)ctx;
  const char *data = luaL_checklstring(L, 2, &len);
  size_t j = (size_t)lua_tointeger(L, 4);
  (void)status;
  if (u->s.fd < 0) return push_fail(L, "closed"); /* closed by another request while parked */
  int rc = u->s.timed_out ? (u->s.err = ETIMEDOUT, SOCK_GONE) : sock_send(&u->s, data, j, &i);
  u->s.timed_out = 0;
  if (rc == SOCK_WAIT) return park(L, u, EV_WRITE, (lua_KContext)i, send_k);
  if (rc == SOCK_GONE) {
    lua_pushnil(L);
    lua_pushstring(L, sock_error(u->s.err));
    lua_pushinteger(L, (lua_Integer)i);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)j);
  return 1;
}

/* sock:send(data [, i [, j]]): the index of the last byte sent, or nil, err, last index sent. */
static int sock_send_l(lua_State *L) {
  check_open(L);
  size_t len;
  luaL_checklstring(L, 2, &len);
  lua_Integer n = (lua_Integer)len, i = luaL_optinteger(L, 3, 1), j = luaL_optinteger(L, 4, -1);
  if (i < 0) i = n + i + 1; /* negative indices count from the end, as in LuaSocket */
  if (j < 0) j = n + j + 1;
  if (i < 1) i = 1;
  if (j > n) j = n;
  if (j < i - 1) j = i - 1;
  lua_settop(L, 4);
  lua_pushinteger(L, j);
  lua_replace(L, 4);
  check_sock(L)->s.timed_out = 0;
  return send_k(L, LUA_OK, (lua_KContext)(i - 1));
}

/* Pushes the line without CR characters (LuaSocket ignores every CR in "*l"). */
static void push_line(lua_State *L, const char *p, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t k = 0; k < n; k++)
    if (p[k] != '\r') luaL_addchar(&b, p[k]);
  luaL_pushresult(&b);
}

/* Answers the pattern from what is buffered: 1 when a result is pushed. */
static int receive_from_buffer(lua_State *L, struct sock *s, int mode) {
  const char *p = s->buf + s->off;
  size_t avail = s->len - s->off;
  if (mode == 'l') {
    const char *nl = avail ? memchr(p, '\n', avail) : NULL;
    if (nl == NULL) return 0;
    push_line(L, p, (size_t)(nl - p));
    sock_take(s, (size_t)(nl - p) + 1);
    return 1;
  }
  if (mode == 'n') {
    size_t want = (size_t)lua_tointeger(L, 2), plen = (size_t)luaL_len(L, 3);
    want = want > plen ? want - plen : 0; /* as LuaSocket: the prefix counts towards n */
    if (avail < want) return 0;
    lua_pushlstring(L, p, want);
    sock_take(s, want);
    return 1;
  }
  return 0;
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = check_sock(L);
  struct sock *s = &u->s;
  int mode = (int)ctx; /* 'l', 'a' or 'n' (count in argument 2) */
  (void)status;
  if (s->fd < 0) { /* closed by another request while parked */
    push_fail(L, "closed");
    lua_pushliteral(L, "");
    return 3;
  }
  for (;;) {
    if (receive_from_buffer(L, s, mode)) break;
    int rc = s->timed_out ? (s->err = ETIMEDOUT, SOCK_GONE) : sock_fill(s);
    s->timed_out = 0;
    if (rc == SOCK_DONE) continue;
    if (rc == SOCK_WAIT) return park(L, u, EV_READ, ctx, receive_k);
    if (mode == 'a' && s->err == 0) { /* "*a" ends at the close, without an error */
      lua_pushlstring(L, s->buf + s->off, s->len - s->off);
      sock_take(s, s->len - s->off);
      break;
    }
    lua_pushnil(L);
    lua_pushstring(L, sock_error(s->err));
    lua_pushvalue(L, 3);
    lua_pushlstring(L, s->buf + s->off, s->len - s->off); /* the partial result */
    lua_concat(L, 2);
    sock_take(s, s->len - s->off);
    return 3;
  }
  lua_pushvalue(L, 3); /* prefix */
  lua_insert(L, -2);
  lua_concat(L, 2);
  return 1;
}

/* sock:receive([pattern [, prefix]]): "*l"/"l" (default), "*a"/"a" or a byte count. */
static int sock_receive_l(lua_State *L) {
  struct lsock *u = check_open(L);
  int mode = 'l';
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    luaL_argcheck(L, luaL_checkinteger(L, 2) >= 0, 2, "negative count");
    mode = 'n';
  } else if (!lua_isnoneornil(L, 2)) {
    const char *p = luaL_checkstring(L, 2);
    if (*p == '*') p++;
    if ((*p != 'l' && *p != 'a') || p[1] != '\0') return luaL_argerror(L, 2, "invalid pattern");
    mode = *p;
  }
  if (lua_isnoneornil(L, 3)) {
    lua_pushliteral(L, "");
    lua_replace(L, 3);
  }
  luaL_checkstring(L, 3);
  u->s.timed_out = 0;
  return receive_k(L, LUA_OK, mode);
}

/* sock:settimeout(seconds): the time each call may wait; nil or negative: no limit. */
static int sock_settimeout_l(lua_State *L) {
  struct lsock *u = check_sock(L);
  u->s.timeout = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
  lua_pushinteger(L, 1);
  return 1;
}

/* Closes the socket; a task of another coroutine parked on it wakes up to "closed". */
static int sock_close_l(lua_State *L) {
  struct lsock *u = check_sock(L);
  struct task *t = u->waiter;
  u->waiter = NULL;
  sock_close(&u->s);
  if (t && t->co != L) task_wake_later(t);
  lua_pushinteger(L, 1);
  return 1;
}

static int sock_setoption_l(lua_State *L) {
  struct lsock *u = check_open(L);
  sock_set_option(&u->s, luaL_checkstring(L, 2), lua_toboolean(L, 3));
  lua_pushinteger(L, 1);
  return 1;
}

/* sock:shutdown([how]): "both" (default), "send" or "receive". */
static int sock_shutdown_l(lua_State *L) {
  struct lsock *u = check_open(L);
  sock_shutdown(&u->s, luaL_optstring(L, 2, "both"));
  lua_pushinteger(L, 1);
  return 1;
}

static int sock_getfd_l(lua_State *L) {
  lua_pushinteger(L, check_sock(L)->s.fd);
  return 1;
}

static int sock_dirty_l(lua_State *L) {
  struct lsock *u = check_sock(L);
  lua_pushboolean(L, u->s.len > u->s.off);
  return 1;
}

static int sock_tostring_l(lua_State *L) {
  struct lsock *u = check_sock(L);
  if (u->s.fd < 0)
    lua_pushliteral(L, "scgi.socket (closed)");
  else
    lua_pushfstring(L, "scgi.socket (fd %d)", u->s.fd);
  return 1;
}

static int sock_gc_l(lua_State *L) {
  sock_close_l(L);
  return 0;
}

/* Creates the socket metatable (once per state, from luaopen_scgi_core). */
void lsocket_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", sock_send_l},   {"receive", sock_receive_l},     {"settimeout", sock_settimeout_l},
      {"close", sock_close_l}, {"setoption", sock_setoption_l}, {"getfd", sock_getfd_l},
      {"dirty", sock_dirty_l}, {"shutdown", sock_shutdown_l},   {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", sock_gc_l}, {"__close", sock_gc_l}, {"__tostring", sock_tostring_l}, {NULL, NULL}};
  if (!luaL_newmetatable(L, SOCK_MT)) {
    lua_pop(L, 1);
    return;
  }
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
