/* lsocket.c: scgi.connect: cooperative TCP and unix stream sockets with LuaSocket's calls and
   return conventions; a call that would block parks the request's coroutine instead. */
#include <errno.h>
#include <lauxlib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server.h"

#define SOCK_MT "scgi.socket"
#define RECV_CHUNK 16384

struct lsock {
  ev_io io; /* first member */
  ev_timer timer;
  struct worker *w;
  struct conn *waiter; /* the request parked on this socket */
  int fd;
  double timeout; /* seconds per call; < 0: none */
  int timed_out;
  char *buf;
  size_t cap, len, off;
};

static struct lsock *check_sock(lua_State *L) {
  return (struct lsock *)luaL_checkudata(L, 1, SOCK_MT);
}

static struct lsock *check_open(lua_State *L) {
  struct lsock *s = check_sock(L);
  if (s->fd < 0) luaL_error(L, "attempt to use a closed socket");
  return s;
}

static void sock_stop(struct lsock *s) {
  if (s->w == NULL) return;
  ev_io_stop(s->w->loop, &s->io);
  ev_timer_stop(s->w->loop, &s->timer);
  s->waiter = NULL;
}

static void sock_cancel(void *arg) { sock_stop(arg); }

static void on_sock_io(struct ev_loop *loop, ev_io *io, int revents) {
  struct lsock *s = (struct lsock *)io;
  struct conn *c = s->waiter;
  (void)loop;
  (void)revents;
  sock_stop(s);
  if (c) conn_resume(c);
}

static void on_sock_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  struct lsock *s = (struct lsock *)((char *)t - offsetof(struct lsock, timer));
  struct conn *c = s->waiter;
  (void)loop;
  (void)revents;
  sock_stop(s);
  s->timed_out = 1;
  if (c) conn_resume(c);
}

/* Parks the running request until the socket is ready for events or its timeout runs out. */
static int sock_park(lua_State *L, struct lsock *s, int events, lua_KContext ctx, lua_KFunction k) {
  struct conn *c = lstate_current(L, "a cooperative socket");
  if (s->waiter != NULL && s->waiter != c)
    return luaL_error(L, "the socket is in use by another request");
  if (!lua_isyieldable(L)) return luaL_error(L, "cannot wait for the socket across a C call here");
  s->w = c->w;
  s->waiter = c;
  ev_io_set(&s->io, s->fd, events);
  ev_io_start(s->w->loop, &s->io);
  if (s->timeout >= 0) {
    ev_now_update(s->w->loop); /* the handler may have run for a while since the loop woke */
    ev_timer_set(&s->timer, s->timeout, 0.);
    ev_timer_start(s->w->loop, &s->timer);
  }
  c->wait = WAIT_OTHER;
  c->cancel = sock_cancel;
  c->cancel_arg = s;
  return lua_yieldk(L, 0, ctx, k);
}

static int push_fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static const char *io_error(int e) {
  return e == EPIPE || e == ECONNRESET || e == 0 ? "closed"
         : e == ECONNREFUSED                     ? "connection refused"
                                                 : strerror(e);
}

/* ---- connect ---- */

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *s = (struct lsock *)lua_touserdata(L, -1);
  int err = 0;
  socklen_t len = sizeof err;
  (void)status;
  (void)ctx;
  if (s->fd < 0) return push_fail(L, "closed");
  if (s->timed_out) {
    close(s->fd);
    s->fd = -1;
    return push_fail(L, "timeout");
  }
  getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    close(s->fd);
    s->fd = -1;
    return push_fail(L, io_error(err));
  }
  return 1;
}

/* scgi.connect(host, port) or scgi.connect("/unix/path"): a connected socket, or nil, message. */
static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lstate_current(L, "scgi.connect");
  struct sockaddr_storage ss;
  socklen_t sl;
  struct addrinfo *res = NULL;
  memset(&ss, 0, sizeof ss);
  if (lua_isnoneornil(L, 2)) {
    struct sockaddr_un *su = (struct sockaddr_un *)&ss;
    luaL_argcheck(L, strlen(host) < sizeof su->sun_path, 1, "unix socket path too long");
    su->sun_family = AF_UNIX;
    strcpy(su->sun_path, host);
    sl = sizeof *su;
  } else {
    lua_Integer port = luaL_checkinteger(L, 2);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    char portstr[16];
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
    snprintf(portstr, sizeof portstr, "%d", (int)port);
    int rc = getaddrinfo(host, portstr, &hints, &res); /* names block: prefer addresses */
    if (rc != 0) return push_fail(L, gai_strerror(rc));
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    sl = res->ai_addrlen;
    freeaddrinfo(res);
  }
  struct lsock *s = (struct lsock *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->timeout = -1;
  luaL_setmetatable(L, SOCK_MT);
  ev_io_init(&s->io, on_sock_io, 0, EV_WRITE);
  ev_init(&s->timer, on_sock_timer);
  s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return push_fail(L, strerror(errno));
  if (connect(s->fd, (struct sockaddr *)&ss, sl) == 0) return 1;
  if (errno == EINPROGRESS) return sock_park(L, s, EV_WRITE, 0, connect_k);
  int e = errno;
  close(s->fd);
  s->fd = -1;
  return push_fail(L, io_error(e == EAGAIN ? ECONNREFUSED : e));
}

/* ---- send ---- */

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *s = check_sock(L);
  if (s->fd < 0) return push_fail(L, "closed"); /* closed by another request while parked */
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  size_t i = (size_t)ctx, j = (size_t)luaL_optinteger(L, 4, -1);
  (void)status;
  if (j > len) j = len;
  if (s->timed_out) {
    s->timed_out = 0;
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    lua_pushinteger(L, (lua_Integer)i);
    return 3;
  }
  while (i < j) {
    ssize_t n = send(s->fd, data + i, j - i, MSG_NOSIGNAL);
    if (n > 0) {
      i += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return sock_park(L, s, EV_WRITE, (lua_KContext)i, send_k);
    lua_pushnil(L);
    lua_pushstring(L, io_error(n < 0 ? errno : EPIPE));
    lua_pushinteger(L, (lua_Integer)i);
    return 3;
  }
  lua_pushinteger(L, (lua_Integer)j);
  return 1;
}

/* sock:send(data [, i [, j]]): the index of the last byte sent, or nil, err, last index sent. */
static int sock_send(lua_State *L) {
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
  check_sock(L)->timed_out = 0;
  return send_k(L, LUA_OK, (lua_KContext)(i - 1));
}

/* ---- receive ---- */

/* Reads what the socket has into the buffer: 1 read something, 0 would block, -1 closed/error. */
static int sock_fill(struct lsock *s, int *err) {
  if (s->off > 0 && s->off == s->len) s->off = s->len = 0;
  if (s->cap - s->len < RECV_CHUNK) {
    if (s->off > 0) {
      memmove(s->buf, s->buf + s->off, s->len - s->off);
      s->len -= s->off;
      s->off = 0;
    }
    if (s->cap - s->len < RECV_CHUNK) {
      size_t cap = s->cap ? s->cap * 2 : RECV_CHUNK * 2;
      char *p = realloc(s->buf, cap);
      if (p == NULL) {
        *err = ENOMEM;
        return -1;
      }
      s->buf = p;
      s->cap = cap;
    }
  }
  for (;;) {
    ssize_t n = recv(s->fd, s->buf + s->len, s->cap - s->len, 0);
    if (n > 0) {
      s->len += (size_t)n;
      return 1;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    *err = n < 0 ? errno : 0;
    return -1;
  }
}

/* Pushes the line without CR characters (LuaSocket ignores every CR in "*l"). */
static void push_line(lua_State *L, const char *p, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t k = 0; k < n; k++)
    if (p[k] != '\r') luaL_addchar(&b, p[k]);
  luaL_pushresult(&b);
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *s = check_sock(L);
  if (s->fd < 0) { /* closed by another request while parked */
    push_fail(L, "closed");
    lua_pushliteral(L, "");
    return 3;
  }
  int mode = (int)ctx, err = 0; /* 'l', 'a' or 'n' (count in argument 2) */
  (void)status;
  for (;;) {
    const char *p = s->buf + s->off;
    size_t avail = s->len - s->off;
    if (mode == 'l') {
      const char *nl = avail ? memchr(p, '\n', avail) : NULL;
      if (nl) {
        push_line(L, p, (size_t)(nl - p));
        s->off += (size_t)(nl - p) + 1;
        break;
      }
    } else if (mode == 'n') {
      size_t want = (size_t)lua_tointeger(L, 2),
             plen = luaL_len(L, 3) > 0 ? (size_t)luaL_len(L, 3) : 0;
      want = want > plen ? want - plen : 0; /* as LuaSocket: the prefix counts towards n */
      if (avail >= want) {
        lua_pushlstring(L, p, want);
        s->off += want;
        break;
      }
    }
    if (s->timed_out) {
      s->timed_out = 0;
      err = ETIMEDOUT;
    } else {
      int r = sock_fill(s, &err);
      if (r == 1) continue;
      if (r == 0) return sock_park(L, s, EV_READ, ctx, receive_k);
    }
    if (mode == 'a' && err == 0) { /* "*a" ends at the close, without an error */
      lua_pushlstring(L, p, avail);
      s->off = s->len = 0;
      break;
    }
    lua_pushnil(L);
    lua_pushstring(L, err == ETIMEDOUT ? "timeout" : io_error(err));
    lua_pushvalue(L, 3);
    lua_pushlstring(L, p, avail); /* the partial result */
    lua_concat(L, 2);
    s->off = s->len = 0;
    return 3;
  }
  lua_pushvalue(L, 3); /* prefix */
  lua_insert(L, -2);
  lua_concat(L, 2);
  return 1;
}

/* sock:receive([pattern [, prefix]]): "*l"/"l" (default), "*a"/"a" or a byte count. */
static int sock_receive(lua_State *L) {
  struct lsock *s = check_open(L);
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
  s->timed_out = 0;
  return receive_k(L, LUA_OK, mode);
}

/* ---- the rest of LuaSocket's client calls ---- */

/* sock:settimeout(seconds): the time each call may wait; nil or negative: no limit. */
static int sock_settimeout(lua_State *L) {
  struct lsock *s = check_sock(L);
  s->timeout = lua_isnoneornil(L, 2) ? -1 : luaL_checknumber(L, 2);
  lua_pushinteger(L, 1);
  return 1;
}

/* Closes the socket; a request of another coroutine parked on it wakes up to "closed". */
static int sock_close(lua_State *L) {
  struct lsock *s = check_sock(L);
  if (s->fd >= 0) {
    struct conn *waiter = s->waiter;
    sock_stop(s);
    close(s->fd);
    s->fd = -1;
    if (waiter && waiter->co != L) conn_resume_later(waiter);
  }
  free(s->buf);
  s->buf = NULL;
  s->cap = s->len = s->off = 0;
  lua_pushinteger(L, 1);
  return 1;
}

static int sock_setoption(lua_State *L) {
  struct lsock *s = check_open(L);
  const char *opt = luaL_checkstring(L, 2);
  int on = lua_toboolean(L, 3);
  if (strcmp(opt, "keepalive") == 0) setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  if (strcmp(opt, "tcp-nodelay") == 0) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  lua_pushinteger(L, 1);
  return 1;
}

/* sock:shutdown([how]): "both" (default), "send" or "receive". */
static int sock_shutdown(lua_State *L) {
  struct lsock *s = check_open(L);
  const char *how = luaL_optstring(L, 2, "both");
  shutdown(s->fd, strcmp(how, "send") == 0      ? SHUT_WR
                  : strcmp(how, "receive") == 0 ? SHUT_RD
                                                : SHUT_RDWR);
  lua_pushinteger(L, 1);
  return 1;
}

static int sock_getfd(lua_State *L) {
  lua_pushinteger(L, check_sock(L)->fd);
  return 1;
}

static int sock_dirty(lua_State *L) {
  struct lsock *s = check_sock(L);
  lua_pushboolean(L, s->len > s->off);
  return 1;
}

static int sock_tostring(lua_State *L) {
  struct lsock *s = check_sock(L);
  if (s->fd < 0)
    lua_pushliteral(L, "scgi.socket (closed)");
  else
    lua_pushfstring(L, "scgi.socket (fd %d)", s->fd);
  return 1;
}

static int sock_gc(lua_State *L) {
  sock_close(L);
  return 0;
}

static void lsocket_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", sock_send},   {"receive", sock_receive},     {"settimeout", sock_settimeout},
      {"close", sock_close}, {"setoption", sock_setoption}, {"getfd", sock_getfd},
      {"dirty", sock_dirty}, {"shutdown", sock_shutdown},   {NULL, NULL},
  };
  static const luaL_Reg meta[] = {
      {"__gc", sock_gc}, {"__close", sock_gc}, {"__tostring", sock_tostring}, {NULL, NULL}};
  if (!luaL_newmetatable(L, SOCK_MT)) {
    lua_pop(L, 1);
    return;
  }
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int lsocket_connect(lua_State *L) {
  lsocket_open(L);
  return l_connect(L);
}
