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

static struct lsock *check_client(lua_State *L) {
  struct lsock *u = lsocket_check(L, 1);
  if (u->state != SOCK_CLIENT) luaL_error(L, "attempt to use a closed socket");
  return u;
}

static void push_session(lua_State *L, struct lsock *u) {
  struct session_box *box = (struct session_box *)lbind_new(L, SESSION_MT, sizeof *box, 0);
  box->session = tls_session(&u->s);
}

/* Drives the handshake; ctx 1: the caller wants the session back, 0: true. */
static int handshake_k(lua_State *L, int status, lua_KContext ctx) {
  struct lsock *u = lsocket_check(L, 1);
  (void)status;
  if (u->state != SOCK_CLIENT) return lsocket_fail(L, "closed");
  int rc = u->s.timed_out ? SOCK_GONE : tls_handshake(&u->s);
  if (u->s.timed_out) {
    u->s.timed_out = 0;
    tls_close(&u->s);
    return lsocket_fail(L, "timeout");
  }
  if (rc == SOCK_WAIT) return lsocket_park(L, u, u->s.want, u->s.timeout, ctx, handshake_k);
  if (rc == SOCK_GONE) {
    lua_pushfstring(L, "handshake failed: %s", sock_error(&u->s));
    tls_close(&u->s);
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (ctx)
    push_session(L, u);
  else
    lua_pushboolean(L, 1);
  return 1;
}

/* sock:sslhandshake([reused_session [, server_name [, verify]]]): TLS on the connected socket,
   the peer's chain and name checked unless verify is false; the session (to resume later) or, if
   reused_session is false, true; nil and the reason on failure. */
static int tcp_sslhandshake(lua_State *L) {
  struct lsock *u = check_client(L);
  int want_session = !(lua_isboolean(L, 2) && !lua_toboolean(L, 2));
  struct session_box *session =
      lua_isuserdata(L, 2)
          ? (struct session_box *)lbind_check(L, 2, SESSION_MT, sizeof(struct session_box))
          : NULL;
  const char *name = luaL_optstring(L, 3, u->host[0] ? u->host : NULL);
  int verify = lua_isnoneornil(L, 4) || lua_toboolean(L, 4);
  char err[256];
  lua_settop(L, 1);
  if (u->s.ssl) { /* a connection from the pool: TLS is up already */
    if (want_session)
      push_session(L, u);
    else
      lua_pushboolean(L, 1);
    return 1;
  }
  void *ctx = tls_context_default(verify, ca_file(L), err, sizeof err);
  if (ctx == NULL) return lsocket_fail(L, err);
  if (tls_start(&u->s, ctx, name, verify, session ? session->session : NULL) < 0)
    return lsocket_fail(L, u->s.tls_error);
  return handshake_k(L, LUA_OK, want_session);
}

/* A string field of the params table at 2, or NULL. */
static const char *field(lua_State *L, const char *name) {
  const char *v = lua_getfield(L, 2, name) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
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
  struct lsock *u = check_client(L);
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
  struct lsock *u = check_client(L);
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  luaL_argcheck(L, n < sizeof u->sni, 2, "name too long");
  memcpy(u->sni, name, n + 1);
  lua_pushboolean(L, 1);
  return 1;
}

/* sock:dohandshake(): the handshake of a socket ssl.wrap prepared; true, or nil and why. */
static int tcp_dohandshake(lua_State *L) {
  struct lsock *u = check_client(L);
  lua_settop(L, 1);
  if (u->s.ssl) return handshake_k(L, LUA_OK, 0);
  if (u->wrap_ctx == NULL) return luaL_error(L, "dohandshake: the socket was not wrapped");
  int rc = tls_start(&u->s, u->wrap_ctx, u->sni[0] ? u->sni : u->host, u->wrap_verify, NULL);
  tls_context_free(u->wrap_ctx); /* the TLS state holds it now */
  u->wrap_ctx = NULL;
  if (rc < 0) return lsocket_fail(L, u->s.tls_error);
  return handshake_k(L, LUA_OK, 0);
}

/* sock:getpeerverification(): true once TLS is up with the peer checked (LuaSec's call). */
static int tcp_getpeerverification(lua_State *L) {
  struct lsock *u = check_client(L);
  lua_pushboolean(L, u->s.ssl != NULL && u->wrap_verify);
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
