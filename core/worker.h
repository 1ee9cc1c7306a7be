/* worker.h: a worker thread: its event loop, its connections, accepting, stopping. No Lua here:
   the worker reaches the Lua runtime through rt.h. */
#ifndef SCGI_WORKER_H
#define SCGI_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>

#include "accept.h"
#include "conn.h"
#include "pool.h"
#include "resolver.h"
#include "stats.h"

struct server;
struct rt;
struct refusal;

#define SCGI_MAX_HEADERS 1024

struct worker {
  struct server *srv;
  int id;
  pthread_t thread;
  struct ev_loop *loop;
  ev_io accept_w;   /* --accept shared, direct: the listener */
  int loop_fd;      /* shared, direct: the epoll set its loop sleeps in (libev's), or -1 */
  int ep_fd;        /* direct: loop_fd, which holds the listener exclusive; else -1 */
  int listening;    /* direct: the listener is in that set now (not paused) */
  uint64_t ep_data; /* ... with the data libev registered it with */
  ev_async wake;
  ev_timer accept_retry; /* EMFILE: paused accepting */
  ev_timer accept_setup; /* direct: makes the listener exclusive once libev has added it */
  ev_async handoff;      /* --accept handoff: clients are in the queue */
  atomic_uint q_head, q_tail;
  int queue[ACCEPT_QUEUE];
  int handed;        /* the acceptor put clients in the queue in this batch */
  atomic_int reload; /* 1: build a new state from the app file */
  atomic_int stop;   /* 1: stop accepting and finish; 2: abandon now */
  int accepting;     /* --accept shared, direct: it watches the listener */
  int stopping;
  int emfile_logged;
  const struct conn_handler *handler; /* the layer above the connections */
  struct conn *conns;
  unsigned nconns;
  struct conn *free_conns; /* a pool of idle conns with their buffers */
  unsigned nfree;
  struct refusal *refusals; /* connections over --max-connections, being answered 503 */
  unsigned nrefusals;
  struct scgi_header *hdrs;
  char *scratch; /* drained bytes go here */
  uint64_t spurious;
  struct worker_stats *st;      /* its slot in the server's table */
  struct sock_pool pool;        /* idle outbound connections (setkeepalive) */
  struct resolve_done resolved; /* names the resolver looked up for this worker */
  struct head_cache head_cache;
  struct rt *rt; /* the worker's Lua runtime */
  char load_error[1024];
};

/* Prepares what the main thread may touch before the thread starts: the loop and its wake-up. */
int worker_init(struct worker *w, struct server *s, int id);
/* What a worker needs before it serves, on its own thread: buffers and the Lua runtime. Returns
   0, or -1 with the reason in w->load_error. worker_teardown undoes it. */
int worker_setup(struct worker *w);
void worker_teardown(struct worker *w);
/* Frees what worker_init made, once the worker's thread is done and no resolver thread can
   answer it any more. */
void worker_fini(struct worker *w);
void *worker_main(void *arg);
/* A connection was freed: a stopping worker whose last one went ends its loop. */
void worker_conn_done(struct worker *w);

#endif
