/* lsocket.c: cooperative TCP and unix sockets with LuaSocket's API (what socket.tcp() and
   socket.connect() give inside a task, and scgi.connect): a call that would block parks the
   running task, not the worker. Names are resolved off the worker (resolver.c), every address is
   tried within the timeout, idle connections go to the worker's pool (setkeepalive). TLS is in
   ltls.c. The I/O is core/sock.c's. */
#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lbind.h"
#include "lsocket.h"
#include "request.h"
#include "server.h"
#include "task.h"
#include "tls.h"
#include "worker.h"

#define POOL_IDLE 60.0 /* seconds a pooled connection may wait, by default */
#define POOL_SIZE 30   /* pooled connections per key, by default */

const char lsocket_tag[] = SOCK_MT;

struct lsock *lsocket_check(lua_State *L, int i) {
  return (struct lsock *)lbind_check(L, i, lsocket_tag, sizeof(struct lsock));
}

struct lsock *lsocket_client(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  if (u->state == SOCK_MASTER) luaL_error(L, "attempt to use a socket that is not connected yet");
  if (u->state == SOCK_BROKEN) {
    lsocket_fail(L, "closed");
    return NULL;
  }
  if (u->state != SOCK_CLIENT) luaL_error(L, "attempt to use a closed socket");
  return u;
}

const char *lsocket_string(lua_State *L, int i, size_t *len) {
  size_t n;
  const char *p = luaL_checklstring(L, i, &n);
  if (strlen(p) != n) luaL_argerror(L, i, "a NUL byte in it");
  if (len) *len = n;
  return p;
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
  resolver_cancel(&u->ask); /* a lookup nobody else waits for is dropped */
  u->waiter = NULL;
}

/* Parks the running task until the socket is ready for events or its timeout runs out (events 0:
   until woken, e.g. by the resolver). */
int lsocket_park(lua_State *L, struct lsock *u, int events, double timeout, lua_KContext ctx,
                 lua_KFunction k) {
  struct task *t = task_running(L, "a cooperative socket");
  if (u->waiter != NULL && u->waiter != t)
    return luaL_error(L, "the socket is in use by another request");
  task_check_wait(L, t);
  u->waiter = t;
  if (events) {
    double saved = u->s.timeout;
    u->s.timeout = timeout;
    sock_wait(&u->s, t->req->rt->w->loop, events);
    u->s.timeout = saved;
  } else {
    sock_wait_timer(&u->s, t->req->rt->w->loop, timeout);
  }
  return task_wait_other(L, t, cancel, u,
                         resolver_pending(&u->ask) ? "a name lookup"
                         : u->state == SOCK_MASTER ? "a connect"
                                                   : "an outbound socket",
                         ctx, k);
}

int lsocket_fail(lua_State *L, const char *msg) {
  luaL_pushfail(L);
  lua_pushstring(L, msg);
  return 2;
}

static struct worker *worker_of(lua_State *L, const char *what) {
  return task_running(L, what)->req->rt->w;
}

/* A new socket (state master) of family: AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX. */
struct lsock *lsocket_new(lua_State *L, int family) {
  struct lsock *u = (struct lsock *)lbind_new(L, lsocket_tag, sizeof *u, 1);
  sock_init(&u->s, on_ready, u);
  u->family = family;
  u->state = SOCK_MASTER;
  u->created = clock_now();
  return u;
}

/* ---- connect ---- */

static int connect_next(lua_State *L, struct lsock *u);

static int connected(lua_State *L, struct lsock *u) {
  u->ask.naddrs = 0;
  u->state = SOCK_CLIENT;
  lua_pushinteger(L, 1);
  return 1;
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = lsocket_check(L, 1);
  (void)status;
  (void)ctx;
  if (u->state != SOCK_MASTER) return lsocket_fail(L, "closed");
  if (sock_connected(&u->s) == SOCK_DONE) return connected(L, u);
  u->addr_i++;
  return connect_next(L, u);
}

/* Tries the next address, with an even share of what is left of the timeout. */
static int connect_next(lua_State *L, struct lsock *u) {
  struct resolve_ask *a = &u->ask;
  while (u->addr_i < a->naddrs) {
    int rc = sock_connect(&u->s, (struct sockaddr *)&a->addrs[u->addr_i], a->lens[u->addr_i]);
    if (rc == SOCK_DONE) return connected(L, u);
    if (rc == SOCK_WAIT) {
      double share = -1;
      if (u->s.timeout >= 0) {
        double left = u->deadline - clock_now();
        share = left <= 0 ? 0 : left / (a->naddrs - u->addr_i);
      }
      return lsocket_park(L, u, EV_WRITE, share, 0, connect_k);
    }
    u->addr_i++;
  }
  a->naddrs = 0;
  return lsocket_fail(L, sock_error(&u->s));
}

static int resolved_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = lsocket_check(L, 1);
  (void)status;
  (void)ctx;
  if (u->state != SOCK_MASTER) return lsocket_fail(L, "closed");
  if (u->s.timed_out) { /* the lookup outlived the timeout: it is dropped unless others wait */
    u->s.timed_out = 0;
    resolver_cancel(&u->ask);
    return lsocket_fail(L, "timeout");
  }
  if (atomic_load(&u->ask.state) != RESOLVE_DONE) return lsocket_fail(L, "closed");
  u->ask.state = RESOLVE_IDLE;
  if (u->ask.err) return lsocket_fail(L, resolver_error(u->ask.err));
  return connect_next(L, u);
}

static void on_resolved(struct resolve_ask *a) {
  struct lsock *u = a->owner;
  struct task *t = u->waiter;
  sock_unwait(&u->s); /* the timeout's timer */
  u->waiter = NULL;
  if (t) task_wake(t);
}

/* sock:connect(host, port [, {pool = name}]) or, unix, sock:connect(path): 1, or nil and the
   reason. A connection kept under the same key (host:port, or the pool's name) is reused. */
static int tcp_connect(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  size_t hlen;
  const char *host = lsocket_string(L, 2, &hlen);
  struct worker *w = worker_of(L, "a cooperative socket");
  if (u->state != SOCK_MASTER || resolver_pending(&u->ask))
    return lsocket_fail(L, "already connected");
  struct resolve_ask *a = &u->ask;
  lua_Integer port = 0;
  if (u->family == AF_UNIX) {
    struct sockaddr_storage ss;
    socklen_t len;
    if (sock_unix_addr(host, &ss, &len) < 0)
      return luaL_argerror(L, 2, "unix socket path too long");
    lua_pushfstring(L, "unix:%s", host);
    a->addrs[0] = ss;
    a->lens[0] = len;
    a->naddrs = 1;
  } else {
    port = luaL_checkinteger(L, 3);
    luaL_argcheck(L, port > 0 && port < 65536, 3, "port out of range");
    luaL_argcheck(L, hlen < sizeof u->host, 2, "host name too long");
    size_t n;
    const char *name;
    if (lua_istable(L, 4) && lua_getfield(L, 4, "pool") != LUA_TNIL) {
      if ((name = lua_tolstring(L, -1, &n)) == NULL || strlen(name) != n)
        return luaL_argerror(L, 4, "pool: a name without NUL bytes expected");
    } else
      lua_pushfstring(L, "%s:%d", host, (int)port);
    memcpy(u->host, host, hlen + 1);
  }
  lua_setiuservalue(L, 1, 1); /* the pool's key */
  lua_getiuservalue(L, 1, 1);
  const char *key = lua_tostring(L, -1);
  u->addr_i = 0;
  u->deadline = u->s.timeout >= 0 ? clock_now() + u->s.timeout : 0;
  int fd;
  void *ssl;
  if (pool_get(&w->pool, key, NULL, NULL, &fd, &ssl, &u->reused)) {
    sock_adopt(&u->s, fd, ssl);
    u->reused++;
    stat_add(&w->st->pool_reused, 1);
    stat_set(&w->st->pooled_sockets, w->pool.n);
    return connected(L, u);
  }
  stat_add(&w->st->pool_new, 1);
  stat_set(&w->st->pooled_sockets, w->pool.n);
  if (u->family == AF_UNIX) return connect_next(L, u);
  a->port = (int)port;
  a->family = u->family;
  a->owner = u;
  a->done = on_resolved;
  a->done_q = &w->resolved;
  int rc = resolver_lookup(w->srv->resolver, a, host);
  if (rc == 1) return resolved_k(L, LUA_OK, 0); /* a numeric address */
  if (rc < 0) return lsocket_fail(L, "no resolver");
  lua_settop(L, 1);
  return lsocket_park(L, u, 0, u->s.timeout, 0, resolved_k);
}

/* ---- send and receive ---- */

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = lsocket_check(L, 1);
  size_t len, i = (size_t)ctx;
  const char *data = luaL_checklstring(L, 2, &len);
  size_t j = (size_t)lua_tointeger(L, 4);
  (void)status;
  if (u->state != SOCK_CLIENT) return lsocket_fail(L, "closed"); /* closed while parked */
  int rc = u->s.timed_out ? (u->s.err = ETIMEDOUT, SOCK_GONE) : sock_send(&u->s, data, j, &i);
  u->s.timed_out = 0;
  if (rc == SOCK_WAIT)
    return lsocket_park(L, u, u->s.ssl ? u->s.want : EV_WRITE, u->s.timeout, (lua_KContext)i,
                        send_k);
  if (rc == SOCK_GONE) {
    luaL_pushfail(L);
    lua_pushstring(L, sock_error(&u->s));
    lua_pushinteger(L, (lua_Integer)i);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)j);
  return 1;
}

/* sock:send(data [, i [, j]]): the index of the last byte sent, or nil, err, last index sent. */
static int tcp_send(lua_State *L) {
  if (lsocket_client(L) == NULL) return 2;
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
  lsocket_check(L, 1)->s.timed_out = 0;
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
static int from_buffer(lua_State *L, struct sock *s, int mode) {
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
  struct lsock *u = lsocket_check(L, 1);
  struct sock *s = &u->s;
  int mode = (int)ctx; /* 'l', 'a' or 'n' (count in argument 2) */
  (void)status;
  if (u->state != SOCK_CLIENT) { /* closed while parked */
    lsocket_fail(L, "closed");
    lua_pushliteral(L, "");
    return 3;
  }
  for (;;) {
    if (from_buffer(L, s, mode)) break;
    int rc = s->timed_out ? (s->err = ETIMEDOUT, SOCK_GONE) : sock_fill(s);
    s->timed_out = 0;
    if (rc == SOCK_DONE) continue;
    if (rc == SOCK_WAIT)
      return lsocket_park(L, u, s->ssl ? s->want : EV_READ, s->timeout, ctx, receive_k);
    if (mode == 'a' && s->err == 0) { /* "*a" ends at the close, without an error */
      lua_pushlstring(L, s->buf + s->off, s->len - s->off);
      sock_take(s, s->len - s->off);
      break;
    }
    luaL_pushfail(L);
    lua_pushstring(L, sock_error(s));
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
static int tcp_receive(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  int mode = 'l';
  lua_settop(L, 3);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    luaL_argcheck(L, luaL_checkinteger(L, 2) >= 0, 2, "negative count");
    mode = 'n';
  } else if (!lua_isnoneornil(L, 2)) {
    const char *p = lsocket_string(L, 2, NULL);
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

/* ---- the rest of LuaSocket's calls, and the pool ---- */

/* sock:settimeout(seconds [, mode]): the time each call may wait; nil or negative: no limit. */
static int tcp_settimeout(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  u->s.timeout = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
  lua_pushinteger(L, 1);
  return 1;
}

/* Closes u (state: SOCK_CLOSED or SOCK_BROKEN) and lets go of what it holds: its lookup, its
   context; a task of another coroutine parked on it wakes up (wake) to "closed". */
static void shut(lua_State *L, struct lsock *u, int state, int wake) {
  struct task *t = u->waiter;
  u->waiter = NULL;
  resolver_cancel(&u->ask);
  if (u->wrap_ctx) tls_context_free(u->wrap_ctx);
  u->wrap_ctx = NULL;
  u->hs_ctx = NULL;
  sock_close(&u->s);
  u->state = state;
  if (t && wake && t->co != L) task_wake_later(t);
}

int lsocket_broken(lua_State *L, struct lsock *u, const char *msg) {
  luaL_pushfail(L);
  lua_pushstring(L, msg); /* msg may be in u */
  shut(L, u, SOCK_BROKEN, 1);
  return 2;
}

/* Closes the socket; a task of another coroutine parked on it wakes up to "closed". */
static int tcp_close(lua_State *L) {
  shut(L, lsocket_check(L, 1), SOCK_CLOSED, 1);
  lua_pushinteger(L, 1);
  return 1;
}

/* __close: as close. */
static int tcp_tbc(lua_State *L) {
  shut(L, lsocket_check(L, 1), SOCK_CLOSED, 1);
  return 0;
}

/* __gc: no task can be parked on it (a parked task holds it), unless the state is closing. */
static int tcp_gc(lua_State *L) {
  struct lsock *u = (struct lsock *)lbind_test(L, 1, lsocket_tag, sizeof(struct lsock));
  if (u) shut(L, u, SOCK_CLOSED, 0); /* another value given this metatable: left alone */
  return 0;
}

/* sock:setkeepalive([max_idle_seconds [, pool_size]]): the connection goes to the worker's pool
   under its key (a later connect to it takes it); the socket is closed either way. */
static int tcp_setkeepalive(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  double idle = luaL_optnumber(L, 2, POOL_IDLE);
  lua_Integer size = luaL_optinteger(L, 3, POOL_SIZE);
  luaL_argcheck(L, size > 0, 3, "pool size must be positive");
  struct worker *w = worker_of(L, "sock:setkeepalive");
  if (sock_dirty(&u->s)) return lsocket_fail(L, "unread data in buffer");
  int fd;
  void *ssl;
  lua_getiuservalue(L, 1, 1);
  const char *key = lua_tostring(L, -1);
  sock_release(&u->s, &fd, &ssl);
  u->state = SOCK_CLOSED;
  if (key == NULL || pool_put(&w->pool, key, fd, ssl, u->reused, idle, (unsigned)size) < 0) {
    struct sock s = {.fd = fd, .ssl = ssl};
    sock_close(&s);
  }
  stat_set(&w->st->pooled_sockets, w->pool.n);
  lua_pushinteger(L, 1);
  return 1;
}

static int tcp_getreusedtimes(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  lua_pushinteger(L, u->reused);
  return 1;
}

static int tcp_setoption(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  const char *name = lsocket_string(L, 2, NULL);
  if (sock_set_option(&u->s, name, lua_isnoneornil(L, 3) || lua_toboolean(L, 3)) < 0)
    return lsocket_fail(L, "unsupported option");
  lua_pushinteger(L, 1);
  return 1;
}

/* sock:shutdown([how]): "both" (default), "send" or "receive". */
static int tcp_shutdown(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  sock_shutdown(&u->s, lua_isnoneornil(L, 2) ? "both" : lsocket_string(L, 2, NULL));
  lua_pushinteger(L, 1);
  return 1;
}

/* getpeername and getsockname: address, port, family ("inet" or "inet6"). */
static int push_name(lua_State *L, int peer) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN];
  if ((peer ? getpeername : getsockname)(u->s.fd, (struct sockaddr *)&ss, &len) < 0)
    return lsocket_fail(L, strerror(errno));
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    lua_pushstring(L, inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip));
    lua_pushinteger(L, ntohs(a->sin_port));
    lua_pushliteral(L, "inet");
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    lua_pushstring(L, inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip));
    lua_pushinteger(L, ntohs(a->sin6_port));
    lua_pushliteral(L, "inet6");
  } else {
    lua_pushliteral(L, "unix");
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "unix");
  }
  return 3;
}

static int tcp_getpeername(lua_State *L) { return push_name(L, 1); }
static int tcp_getsockname(lua_State *L) { return push_name(L, 0); }

static int tcp_getstats(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  lua_pushinteger(L, (lua_Integer)u->s.bytes_in);
  lua_pushinteger(L, (lua_Integer)u->s.bytes_out);
  lua_pushnumber(L, clock_now() - u->created);
  return 3;
}

static int tcp_getfd(lua_State *L) {
  lua_pushinteger(L, lsocket_check(L, 1)->s.fd);
  return 1;
}

static int tcp_dirty(lua_State *L) {
  lua_pushboolean(L, sock_dirty(&lsocket_check(L, 1)->s));
  return 1;
}

static int tcp_unsupported(lua_State *L) {
  return luaL_error(L, "cooperative sockets are clients: listen outside requests and tasks");
}

static int tcp_tostring(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  const char *what = u->state == SOCK_CLIENT   ? "client"
                     : u->state == SOCK_MASTER ? "master"
                                               : "closed";
  lua_pushfstring(L, "%s{%s}: %p", u->family == AF_UNIX ? "unix" : "tcp", what, (void *)u);
  return 1;
}

/* scgi.tcp([family [, what]]): a cooperative socket for the running task ("any", "inet",
   "inet6", "unix"); what names the caller in the error raised outside a task. */
static int l_tcp(lua_State *L) {
  static const char *const names[] = {"any", "inet", "inet6", "unix", NULL};
  static const int families[] = {AF_UNSPEC, AF_INET, AF_INET6, AF_UNIX};
  if (!lua_isnoneornil(L, 1)) lsocket_string(L, 1, NULL);
  int f = luaL_checkoption(L, 1, "any", names);
  task_running(L, luaL_optstring(L, 2, "a cooperative socket"));
  lsocket_new(L, families[f]);
  return 1;
}

/* scgi.is_socket(v): whether v is a cooperative socket. */
static int l_is_socket(lua_State *L) {
  lua_pushboolean(L, lbind_test(L, 1, lsocket_tag, sizeof(struct lsock)) != NULL);
  return 1;
}

/* scgi.in_task(): whether the caller runs in a task (so socket.tcp() gives a cooperative one). */
static int l_in_task(lua_State *L) {
  struct rt *rt = rt_self();
  lua_pushboolean(L, rt && rt->current && rt->running == L);
  return 1;
}

void lsocket_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"connect", tcp_connect},
      {"send", tcp_send},
      {"receive", tcp_receive},
      {"settimeout", tcp_settimeout},
      {"close", tcp_close},
      {"setoption", tcp_setoption},
      {"getfd", tcp_getfd},
      {"dirty", tcp_dirty},
      {"shutdown", tcp_shutdown},
      {"getpeername", tcp_getpeername},
      {"getsockname", tcp_getsockname},
      {"getstats", tcp_getstats},
      {"setkeepalive", tcp_setkeepalive},
      {"getreusedtimes", tcp_getreusedtimes},
      {"bind", tcp_unsupported},
      {"listen", tcp_unsupported},
      {"accept", tcp_unsupported},
      {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", tcp_gc}, {"__close", tcp_tbc}, {"__tostring", tcp_tostring}, {NULL, NULL}};
  if (!luaL_newmetatable(L, SOCK_MT)) {
    lua_pop(L, 1);
    return;
  }
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  ltls_methods(L); /* sslhandshake, and LuaSec's dohandshake, sni ... */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* The functions in the table on top: tcp, in_task, is_socket. */
void lsocket_funcs(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"tcp", l_tcp}, {"in_task", l_in_task}, {"is_socket", l_is_socket}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
