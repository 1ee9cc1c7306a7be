/* pool.h: a worker's pool of idle outbound connections (sock:setkeepalive), keyed by host and
   port or by a name (any length); a pooled connection its peer closes, or that stays idle too
   long, is closed. A TLS connection is handed only to a caller whose fits() takes its TLS state
   (the same server name, verification and context: tls_fits). No Lua here. */
#ifndef SCGI_POOL_H
#define SCGI_POOL_H

#include <ev.h>

#define POOL_MAX 4096 /* idle connections a worker keeps in all */

struct pooled;

struct sock_pool {
  struct ev_loop *loop;
  struct pooled *all;
  unsigned n;
  unsigned long long hits, misses; /* connects that reused one, and that did not */
};

void pool_init(struct sock_pool *p, struct ev_loop *loop);
void pool_fini(struct sock_pool *p);
/* Keeps fd (and its TLS state ssl) under key for up to max_idle seconds (0: no limit), at most
   size under that key. 0, or -1 when it was not kept (the caller closes it). */
int pool_put(struct sock_pool *p, const char *key, int fd, void *ssl, unsigned reused,
             double max_idle, unsigned size);
/* Takes the newest idle connection kept under key that fits (fits NULL: any; else a plain
   connection never fits, and a TLS one when fits(ssl, arg) says so): 1 with *fd, *ssl and
   *reused set, or 0. */
int pool_get(struct sock_pool *p, const char *key, int (*fits)(void *ssl, const void *arg),
             const void *arg, int *fd, void **ssl, unsigned *reused);

#endif
