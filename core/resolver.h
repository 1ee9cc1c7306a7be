/* resolver.h: name resolution off the worker threads: a few threads run getaddrinfo and hand
   the addresses back to the asking worker's loop. No Lua here. */
#ifndef SCGI_RESOLVER_H
#define SCGI_RESOLVER_H

#include <ev.h>
#include <pthread.h>
#include <sys/socket.h>

#define RESOLVE_MAX 8 /* addresses kept per name */

struct resolver;

/* One lookup: what to resolve, and where the answer goes. */
struct resolve_job {
  struct resolve_job *next;
  struct resolve_done *done_q;         /* the asking worker's queue */
  void (*done)(struct resolve_job *j); /* called on the worker's loop */
  void *owner;
  int cancelled; /* the asker went away: free the job when it comes back */
  char host[256];
  int port, family; /* family: AF_UNSPEC, AF_INET or AF_INET6 */
  int err;          /* 0, or a getaddrinfo code */
  int naddrs;
  struct sockaddr_storage addrs[RESOLVE_MAX];
  socklen_t lens[RESOLVE_MAX];
};

/* A worker's queue of finished lookups. */
struct resolve_done {
  pthread_mutex_t mu;
  struct resolve_job *head;
  struct ev_loop *loop;
  ev_async async;
};

struct resolver *resolver_start(int threads);
void resolver_stop(struct resolver *rs);
void resolve_done_init(struct resolve_done *q, struct ev_loop *loop);
void resolve_done_fini(struct resolve_done *q);
/* Queues the job; its done runs on q's loop. A numeric address is answered at once (done is not
   called; returns 1). Returns 0 when queued, -1 when the resolver is gone. */
int resolver_lookup(struct resolver *rs, struct resolve_job *j);
/* Whether host is an IP address (then resolver_lookup answers at once). */
int resolver_numeric(const char *host, int port, int family, struct resolve_job *j);
const char *resolver_error(int err);

#endif
