/* lsocket.h: the cooperative socket object, as lsocket.c and ltls.c share it. */
#ifndef SCGI_LSOCKET_H
#define SCGI_LSOCKET_H

#include <lua.h>

#include "pool.h"
#include "resolver.h"
#include "sock.h"

#define SOCK_MT "scgi.socket"

enum { SOCK_MASTER, SOCK_CLIENT, SOCK_CLOSED };

struct task;

struct lsock {
  const char *tag; /* lbind.h: lsocket_tag */
  struct sock s;
  struct task *waiter;      /* the task parked on this socket */
  int state;                /* SOCK_MASTER (not connected yet), SOCK_CLIENT, SOCK_CLOSED */
  int family;               /* AF_UNSPEC, AF_INET, AF_INET6 or AF_UNIX */
  double created, deadline; /* the connect's deadline (monotonic), 0: none */
  unsigned reused;          /* times this connection came out of the pool */
  struct resolve_job *job;  /* the lookup (then the addresses) of a connect */
  int addr_i;               /* the address tried now */
  char key[POOL_KEY];       /* the pool's key: host:port, unix:path, or a name */
  char host[256];           /* the name connected to, for SNI and the certificate check */
  void *wrap_ctx;           /* ssl.wrap: the context its params made (owned) */
  int wrap_verify;
  char sni[256];
};

/* The socket's type name, whose address is every socket's tag (lbind.h). */
extern const char lsocket_tag[];
struct lsock *lsocket_check(lua_State *L, int i);
struct lsock *lsocket_new(lua_State *L, int family);
/* Parks the running task until the socket is ready for events (0: until woken) or timeout. */
int lsocket_park(lua_State *L, struct lsock *u, int events, double timeout, lua_KContext ctx,
                 lua_KFunction k);
int lsocket_fail(lua_State *L, const char *msg);
/* The TLS methods of the socket (ltls.c), set in the methods table on top. */
void ltls_methods(lua_State *L);

#endif
