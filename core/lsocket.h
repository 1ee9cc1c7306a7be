/* lsocket.h: the cooperative socket object, as lsocket.c and ltls.c share it. */
#ifndef SCGI_LSOCKET_H
#define SCGI_LSOCKET_H

#include <lua.h>

#include "pool.h"
#include "resolver.h"
#include "sock.h"

#define SOCK_MT "scgi.socket"

/* SOCK_BROKEN: closed by a failure (a TLS handshake that failed): its calls answer nil, "closed";
   SOCK_CLOSED: closed by the caller: its calls raise. */
enum { SOCK_MASTER, SOCK_CLIENT, SOCK_CLOSED, SOCK_BROKEN };

struct task;

/* The Lua userdata (its user value 1: the pool's key, host:port, unix:path or a name). */
struct lsock {
  const char *tag; /* lbind.h: lsocket_tag */
  struct sock s;
  struct task *waiter;      /* the task parked on this socket */
  int state;                /* SOCK_MASTER (not connected yet), SOCK_CLIENT, ... */
  int family;               /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX */
  double created, deadline; /* the connect's deadline (monotonic), 0: none */
  unsigned reused;          /* times this connection came out of the pool */
  int addr_i;               /* the address tried now */
  char host[256];           /* the name connected to, for SNI and the certificate check */
  void *wrap_ctx;           /* ssl.wrap: the context its params made (owned) */
  int wrap_verify;
  char sni[256];
  void *hs_ctx;           /* the handshake under way: its context (wrap_ctx or a shared one), */
  int hs_verify;          /* whether it verifies, */
  char hs_name[256];      /* and the server name it sends and checks */
  struct resolve_ask ask; /* a connect's lookup, then its addresses */
};

/* The socket's type name, whose address is every socket's tag (lbind.h). */
extern const char lsocket_tag[];
struct lsock *lsocket_check(lua_State *L, int i);
struct lsock *lsocket_new(lua_State *L, int family);
/* The connected socket at 1; raises for one not connected or closed by the caller; NULL with
   nil, "closed" pushed for one a failure closed. */
struct lsock *lsocket_client(lua_State *L);
/* The string at i, which C takes up to its first NUL: raises when it holds one. */
const char *lsocket_string(lua_State *L, int i, size_t *len);
/* Parks the running task until the socket is ready for events (0: until woken) or timeout. */
int lsocket_park(lua_State *L, struct lsock *u, int events, double timeout, lua_KContext ctx,
                 lua_KFunction k);
int lsocket_fail(lua_State *L, const char *msg);
/* Closes the socket after a failure (it never goes to the pool; its calls answer nil,
   "closed"); returns nil, msg. */
int lsocket_broken(lua_State *L, struct lsock *u, const char *msg);
/* The TLS methods of the socket (ltls.c), set in the methods table on top. */
void ltls_methods(lua_State *L);

#endif
