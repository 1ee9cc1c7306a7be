/* resolver.h: name resolution off the worker threads: a few threads run getaddrinfo and hand
   the addresses back to the asking worker's loop. Askers of one name at once share one lookup;
   a lookup nobody waits for any more is dropped from the queue, and the stop never waits for one
   that is running. No Lua here. */
#ifndef SCGI_RESOLVER_H
#define SCGI_RESOLVER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define RESOLVE_MAX 8 /* addresses kept per name */

struct resolver;
struct resolve_job;

enum resolve_state {
  RESOLVE_IDLE,    /* nothing asked (or cancelled) */
  RESOLVE_WAITING, /* a lookup runs or is queued for it */
  RESOLVE_QUEUED,  /* answered, in the worker's queue */
  RESOLVE_DONE     /* answered: err, naddrs and addrs are set */
};

/* One asker's wait for a name, owned by the asker (it may live inside a Lua userdata): the
   resolver touches it only between resolver_lookup and its done call or resolver_cancel. */
struct resolve_ask {
  struct resolve_ask *next;            /* in the lookup's list, then in done_q */
  struct resolve_job *job;             /* the lookup it waits on (RESOLVE_WAITING) */
  struct resolver *rs;                 /* the resolver it asked */
  struct resolve_done *done_q;         /* the asking worker's queue */
  void (*done)(struct resolve_ask *a); /* called on the worker's loop */
  void *owner;
  atomic_int state; /* enum resolve_state */
  int port, family; /* family: AF_UNSPEC, AF_INET or AF_INET6 */
  int err;          /* 0, or a getaddrinfo code */
  int naddrs;
  struct sockaddr_storage addrs[RESOLVE_MAX];
  socklen_t lens[RESOLVE_MAX];
};

/* A worker's queue of answered asks. */
struct resolve_done {
  pthread_mutex_t mu;
  struct resolve_ask *head;
  struct ev_loop *loop;
  ev_async async;
};

struct resolver *resolver_start(int threads);
/* Stops the idle threads and drops what is queued; a thread in a lookup is left to end by itself
   (nobody waits for it: every asker was cancelled before). */
void resolver_stop(struct resolver *rs);
void resolve_done_init(struct resolve_done *q, struct ev_loop *loop);
void resolve_done_fini(struct resolve_done *q);
/* Asks for host's addresses (a->port, a->family, a->done, a->done_q, a->owner set): a numeric
   address is answered at once (returns 1, done is not called); 0 when a lookup runs for it
   (done runs on done_q's loop), -1 when the resolver is gone or out of memory. */
int resolver_lookup(struct resolver *rs, struct resolve_ask *a, const char *host);
/* The asker no longer waits: when this returns, the resolver never touches a again (a lookup
   that nobody else waits for leaves the queue). Any state; a is RESOLVE_IDLE after. */
void resolver_cancel(struct resolve_ask *a);
/* Whether a waits for its answer (queued or not yet taken by its worker). */
int resolver_pending(const struct resolve_ask *a);
const char *resolver_error(int err);

#endif
