/* ltls.c: TLS on cooperative sockets: OpenResty's sock:sslhandshake(reused_session, server_name,
   verify), which checks the peer against the system's trusted certificates (or --ca-file) unless
   told not to, and what LuaSec's ssl.wrap(sock, params) gives (sni, dohandshake), so that
   ssl.https works unchanged and cooperatively. The TLS itself is core/tls.c's. */
#include <lauxlib.h>
#include <string.h>

#include "lbind.h"
#include "lsocket.h"
#include "request.h"
#include "server.h"
#include "task.h"
#include "tls.h"
#include "worker.h"

static const char SESSION_MT[] = "scgi.ssl_session"; /* its address: a session's tag */

struct session_box {
  const char *tag; /* lbind.h */
  void *session;
};

static const char *ca_file(lua_State *L) {
  return task_running(L, "TLS")->req->rt->w->srv->cfg.ca_file;
}

static void push_session(lua_State *L, struct lsock *u) {
  struct session_box *box = (struct session_box *)lbind_new(L, SESSION_MT, sizeof *box, 0);
  box->session = tls_session(&u->s);
}

/* The handshake's result: the session (want 1) or true. */
static int done(lua_State *L, struct lsock *u, lua_KContext want) {
  if (want)
    push_session(L, u);
  else
    lua_pushboolean(L, 1);
  return 1;
}

/* Drives the handshake (want: as done). Any failure closes the socket: nothing goes out in
   plaintext after it, and it never enters the pool. */
static int handshake_k(lua_State *L, int status, lua_KContext want) {
  struct lsock *u = lsocket_check(L, 1);
  (void)status;
  if (u->state != SOCK_CLIENT) return lsocket_fail(L, "closed");
  if (u->s.timed_out) {
    u->s.timed_out = 0;
    return lsocket_broken(L, u, "timeout");
  }
  int rc = tls_handshake(&u->s);
  if (rc == SOCK_WAIT) return lsocket_park(L, u, u->s.want, u->s.timeout, want, handshake_k);
  if (rc == SOCK_GONE) {
    lua_pushfstring(L, "handshake failed: %s", sock_error(&u->s));
    return lsocket_broken(L, u, lua_tostring(L, -1));
  }
  return done(L, u, want);
}

/* Starts TLS as u->hs_* say on the connected socket (the session to resume at 2), then drives
   the handshake. */
static int start(lua_State *L, struct lsock *u, lua_KContext want) {
  struct session_box *box =
      (struct session_box *)lbind_test(L, 2, SESSION_MT, sizeof(struct session_box));
  int rc = tls_start(&u->s, u->hs_ctx, u->hs_name[0] ? u->hs_name : NULL, u->hs_verify,
                     box ? box->session : NULL);
  if (u->wrap_ctx && u->wrap_ctx == u->hs_ctx) { /* the TLS state holds it now */
    tls_context_free(u->wrap_ctx);
    u->wrap_ctx = NULL;
  }
  u->hs_ctx = NULL;
  if (rc < 0) return lsocket_broken(L, u, u->s.tls_error);
  return handshake_k(L, LUA_OK, want);
}

static int redial_k(lua_State *L, int status, lua_KContext want) {
  struct lsock *u = lsocket_check(L, 1);
  (void)status;
  if (u->state != SOCK_CLIENT) return lsocket_fail(L, "closed");
  if (sock_connected(&u->s) != SOCK_DONE) return lsocket_broken(L, u, sock_error(&u->s));
  return start(L, u, want);
}

/* Lets the connection go (closed) and takes an idle one from the pool under the socket's key
   that fits: 1, or 0 (the socket has no connection then). */
static int repool(lua_State *L, struct lsock *u, int (*fits)(void *ssl, const void *arg),
                  const void *arg) {
  struct worker *w = task_running(L, "TLS")->req->rt->w;
  int fd;
  void *ssl;
  sock_close(&u->s);
  lua_getiuservalue(L, 1, 1);
  const char *key = lua_tostring(L, -1);
  int got = key && pool_get(&w->pool, key, fits, arg, &fd, &ssl, &u->reused);
  lua_pop(L, 1);
  stat_set(&w->st->pooled_sockets, w->pool.n);
  if (!got) return 0;
  sock_adopt(&u->s, fd, ssl);
  u->reused++;
  return 1;
}

/* TLS as u->hs_* say: on a connection from the pool that was made so, nothing to do; on one
   made otherwise (another name, verification or context), another pooled connection that fits
   or else a new one to the same peer, then the handshake. */
static int begin(lua_State *L, struct lsock *u, lua_KContext want) {
  if (u->s.ssl == NULL) return start(L, u, want);
  struct tls_want w = {u->hs_ctx, u->hs_name[0] ? u->hs_name : NULL, u->hs_verify};
  if (tls_fits(u->s.ssl, &w)) {
    u->hs_ctx = NULL;
    return done(L, u, want);
  }
  struct sockaddr_storage peer;
  socklen_t len;
  if (sock_peer(&u->s, &peer, &len) < 0) return lsocket_broken(L, u, "closed");
  if (repool(L, u, tls_fits, &w)) {
    u->hs_ctx = NULL;
    return done(L, u, want);
  }
  u->reused = 0;
  int rc = sock_connect(&u->s, (struct sockaddr *)&peer, len);
  if (rc == SOCK_GONE) return lsocket_broken(L, u, sock_error(&u->s));
  if (rc == SOCK_WAIT) return lsocket_park(L, u, EV_WRITE, u->s.timeout, want, redial_k);
  return start(L, u, want);
}

/* sock:sslhandshake([reused_session [, server_name [, verify]]]): TLS on the connected socket,
   the peer's chain and name checked unless verify is false (verifying needs a name); the session
   (to resume later) or, if reused_session is false, true; nil and the reason on failure, which
   closes the socket. */
static int tcp_sslhandshake(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  int want_session = !(lua_isboolean(L, 2) && !lua_toboolean(L, 2));
  if (lua_isuserdata(L, 2)) lbind_check(L, 2, SESSION_MT, sizeof(struct session_box));
  size_t n = 0;
  const char *name = lua_isnoneornil(L, 3) ? u->host : lsocket_string(L, 3, &n);
  luaL_argcheck(L, n < sizeof u->hs_name, 3, "name too long");
  int verify = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
  char err[256];
  memmove(u->hs_name, name, strlen(name) + 1);
  u->hs_verify = verify;
  lua_settop(L, 2);
  if ((u->hs_ctx = tls_context_default(verify, ca_file(L), err, sizeof err)) == NULL)
    return lsocket_broken(L, u, err);
  return begin(L, u, want_session);
}

/* A string field of the params table at 2, or NULL. */
static const char *field(lua_State *L, const char *name) {
  const char *v = NULL;
  if (lua_getfield(L, 2, name) == LUA_TSTRING) {
    v = lua_tostring(L, -1);
    if (strlen(v) != lua_rawlen(L, -1)) luaL_error(L, "ssl.wrap: %s holds a NUL byte", name);
  }
  lua_pop(L, 1); /* the string stays alive in the table */
  return v;
}

/* Whether LuaSec's verify parameter (a string or a list) holds "peer". */
static int verify_peer(lua_State *L) {
  int t = lua_getfield(L, 2, "verify"), on = 0;
  if (t == LUA_TSTRING) on = strcmp(lua_tostring(L, -1), "peer") == 0;
  for (int i = 1; t == LUA_TTABLE && !on; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
      lua_pop(L, 1);
      break;
    }
    on = strcmp(lua_tostring(L, -1), "peer") == 0;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return on;
}

/* tls_wrap(sock, params): LuaSec's ssl.wrap for a cooperative socket; the socket itself, ready
   for sni and dohandshake. With verify "peer" and no cafile or capath, the system's store. */
static int l_tls_wrap(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *mode = field(L, "mode");
  if (mode && strcmp(mode, "client") != 0)
    return lsocket_fail(L, "cooperative sockets do TLS as clients only");
  struct tls_params p = {.verify = verify_peer(L),
                         .cafile = field(L, "cafile"),
                         .capath = field(L, "capath"),
                         .certificate = field(L, "certificate"),
                         .key = field(L, "key"),
                         .ciphers = field(L, "ciphers"),
                         .protocol = field(L, "protocol")};
  char err[256];
  void *ctx = tls_context(&p, ca_file(L), err, sizeof err);
  if (ctx == NULL) return lsocket_fail(L, err);
  if (u->wrap_ctx) tls_context_free(u->wrap_ctx);
  u->wrap_ctx = ctx;
  u->wrap_verify = p.verify;
  lua_settop(L, 1);
  return 1;
}

/* sock:sni(name): the server name a wrapped socket sends (and checks, with verify "peer"). */
static int tcp_sni(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  size_t n;
  const char *name = lsocket_string(L, 2, &n);
  luaL_argcheck(L, n < sizeof u->sni, 2, "name too long");
  memcpy(u->sni, name, n + 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:dohandshake(): the handshake of a socket ssl.wrap prepared; true, or nil and why. */
static int tcp_dohandshake(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  lua_settop(L, 1);
  lua_pushnil(L); /* no session to resume */
  if (u->wrap_ctx == NULL) {
    if (u->s.ssl && tls_handshake(&u->s) == SOCK_DONE) return done(L, u, 0); /* done before */
    return luaL_error(L, "dohandshake: the socket was not wrapped");
  }
  const char *name = u->sni[0] ? u->sni : u->host;
  memmove(u->hs_name, name, strlen(name) + 1);
  u->hs_verify = u->wrap_verify;
  u->hs_ctx = u->wrap_ctx;
  return begin(L, u, 0);
}

/* sock:getpeerverification(): true once TLS is up with the peer checked (LuaSec's call). */
static int tcp_getpeerverification(lua_State *L) {
  struct lsock *u = lsocket_client(L);
  if (u == NULL) return 2;
  lua_pushboolean(L, tls_verified(&u->s));
  return 1;
}

static int session_gc(lua_State *L) {
  struct session_box *box =
      (struct session_box *)lbind_test(L, 1, SESSION_MT, sizeof(struct session_box));
  if (box == NULL) return 0; /* another value given this metatable (debug.setmetatable) */
  tls_session_free(box->session);
  box->session = NULL;
  return 0;
}

void ltls_methods(lua_State *L) {
  static const luaL_Reg methods[] = {{"sslhandshake", tcp_sslhandshake},
                                     {"sni", tcp_sni},
                                     {"dohandshake", tcp_dohandshake},
                                     {"getpeerverification", tcp_getpeerverification},
                                     {NULL, NULL}};
  luaL_setfuncs(L, methods, 0);
  if (luaL_newmetatable(L, SESSION_MT)) {
    lua_pushcfunction(L, session_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

/* The functions in the table on top: tls_wrap. */
void ltls_funcs(lua_State *L) {
  lua_pushcfunction(L, l_tls_wrap);
  lua_setfield(L, -2, "tls_wrap");
}
