/* server.h: the server, its workers and their connections, as the core's files share them. */
#ifndef SCGI_SERVER_H
#define SCGI_SERVER_H

#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "scgi_parse.h"

#define SCGI_VERSION "0.1.0"
#define SCGI_MAX_HEADERS 1024

struct server;
struct worker;

#define STAT_BUCKETS 14
extern const double stat_bucket_ms[STAT_BUCKETS]; /* upper bounds; the last is +inf */

/* A worker's figures: written by the worker only, read by the stats endpoint (relaxed atomics:
   plain loads and stores on x86, no locked instructions on the request path). */
struct worker_stats {
  _Atomic uint64_t requests, errors, connections, active, bytes_in, bytes_out, memory;
  _Atomic uint64_t latency[STAT_BUCKETS];
};

static inline void stat_add(_Atomic uint64_t *v, uint64_t n) {
  atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void stat_set(_Atomic uint64_t *v, uint64_t n) {
  atomic_store_explicit(v, n, memory_order_relaxed);
}

/* A loaded app: a Lua state and its handler. Requests hold a reference, so after a reload the
   old state lives until its last request ends. */
#define CO_POOL 64    /* finished coroutines an app keeps for the next requests */
#define NAME_SLOTS 48 /* header positions whose name and value strings an app keeps */

struct str_slot {
  int ref; /* registry reference of the Lua string, 0 when empty */
  size_t len;
  char bytes[40];
};

struct app {
  lua_State *L;
  int handler_ref;
  unsigned refs;
  int owned; /* lua_close it at the last reference (not a caller's state) */
  int nidle;
  lua_State *idle[CO_POOL]; /* coroutines that returned normally, ready for reuse */
  int idle_ref[CO_POOL];
  struct str_slot names[NAME_SLOTS], values[NAME_SLOTS];
};

enum conn_state {
  CONN_HEAD,   /* reading the header block */
  CONN_RUN,    /* the handler's coroutine owns the connection */
  CONN_FLUSH,  /* handler done: writing what is buffered */
  CONN_LINGER, /* response sent: discarding the unread body until the peer closes */
  CONN_CLOSED  /* descriptor closed; the struct lives until the coroutine ends */
};

enum conn_wait { WAIT_NONE, WAIT_READ, WAIT_WRITE, WAIT_TIMER, WAIT_OTHER };

struct conn {
  ev_io io;        /* first member: the watcher's address is the conn's */
  ev_timer timer;  /* inactivity (--timeout) while waiting on this socket */
  ev_timer budget; /* --request-timeout, from accept to close */
  ev_timer wake;   /* scgi.sleep */
  struct worker *w;
  struct conn *prev, *next;
  int fd;
  enum conn_state state;
  enum conn_wait wait; /* what the parked coroutine waits for */
  uint64_t id;         /* request id, for the logs */
  char *in;            /* header block, then body bytes */
  size_t in_cap, in_len, in_off;
  char *out;
  size_t out_cap, out_len, out_off;
  uint64_t content_length, body_recv, body_read;
  uint64_t bytes_out; /* bytes that reached the socket */
  uint64_t bytes_in;
  double start;    /* accept time (monotonic seconds) */
  double deadline; /* when the request budget runs out (monotonic), or 0 for never */
  int status;      /* the response's status, for the logs and the figures */
  lua_State *co;   /* the request's coroutine, NULL when none runs */
  struct app *app; /* the app it runs in */
  int co_ref, client_ref;
  struct lclient *client;
  int err;                /* errno of a failed read or write, or -1 at EOF */
  unsigned peer_gone : 1; /* the peer closed or reset: reads and writes answer "closed" */
  unsigned timed_out : 1;
  unsigned cpu_killed : 1;    /* stopped by the CPU guard */
  unsigned co_done : 1;       /* the coroutine returned normally: it may be reused */
  unsigned budget_killed : 1; /* stopped by --request-timeout while running */
  void (*cancel)(void *);     /* WAIT_OTHER: stops the watcher the coroutine is parked on */
  void *cancel_arg;
  char method[12];
  char *uri; /* REQUEST_URI for the logs (malloc'd) */
};

struct worker {
  struct server *srv;
  int id;
  pthread_t thread;
  struct ev_loop *loop;
  ev_io accept_w;
  ev_async wake;
  ev_timer accept_retry; /* EMFILE: paused accepting */
  int ep_fd;             /* private epoll holding the listener with EPOLLEXCLUSIVE */
  struct app *app;       /* the app new requests run in */
  atomic_int reload;     /* 1: build a new state from the app file */
  struct conn *conns;
  unsigned nconns;
  struct conn *free_conns; /* a pool of idle conns with their buffers */
  unsigned nfree;
  atomic_int stop; /* 1: stop accepting and finish; 2: abandon now */
  int accepting;
  int emfile_logged;
  char warn_buf[512]; /* a Lua warning being assembled */
  struct scgi_header *hdrs;
  char *scratch; /* drained bytes go here */
  uint64_t served, errors, spurious;
  struct worker_stats st;
  unsigned live;        /* requests whose coroutine is alive */
  struct conn *current; /* the request whose coroutine is running now */
  double resume_start;  /* when it was resumed (monotonic seconds) */
  int slice_over;       /* the running request has had its time slice */
  double cpu_allowance; /* what the CPU guard allows now: --cpu-limit, less while cleaning up */
  size_t mem_used, mem_limit;
  int mem_limited; /* 1 while a request's coroutine runs: the limit applies */
  char load_error[1024];
};

struct server {
  struct scgi_config cfg;
  struct listener lst;
  int nworkers;
  struct worker *workers;
  struct ev_loop *loop; /* the main thread's: signals, grace, worker exits */
  ev_signal sig_term, sig_int;
  ev_timer grace_timer;
  ev_async done;
  atomic_int running;   /* workers whose loop has not ended */
  atomic_int listen_fd; /* lst.fd until the last worker stops accepting and closes it */
  atomic_int stopped_accepting;
  atomic_int reload_failures;
  ev_signal sig_hup;
  atomic_uint_fast64_t next_id;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready, failed, go; /* start-up handshake: states built, then the listener is there */
  int stopping;
  double started; /* start time (monotonic), for the uptime */
  struct listener stats_lst;
  ev_io stats_w;
  struct logger *log;
  ev_signal sig_usr1;
  ev_timer watch_timer; /* --reload-on-change */
  pthread_mutex_t files_mu;
  char **files; /* the app file and the modules it loaded, with their mtimes */
  double *mtimes;
  int nfiles;
  struct shdict *dicts[16]; /* --shared */
  int ndicts;
  lua_State *fn_L; /* a caller's function handler: its state and registry ref */
  int fn_ref;
  const char *lua_path, *lua_cpath; /* package.path and cpath for worker states, or NULL */
};

/* server.c */
int server_run(struct server *s, char *err, size_t errlen);
void server_set_files(struct server *s, char **files, int n);

/* priv.c */
int priv_chown_socket(struct listener *l, const char *owner, char *err, size_t errlen);
int priv_drop(const struct scgi_config *cfg, char *err, size_t errlen);

/* worker.c */
int worker_init(struct worker *w, struct server *s, int id);
void *worker_main(void *arg);
void worker_conn_done(struct worker *w);

/* conn.c */
void conn_start(struct worker *w, int fd);
void conn_on_io(struct ev_loop *loop, ev_io *io, int revents);
void conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents);
void conn_park(struct conn *c, enum conn_wait wait);
int conn_fill(struct conn *c, size_t want);
int conn_flush(struct conn *c);
void conn_respond_error(struct conn *c, int status, const char *why);
void conn_free_all(struct worker *w);
void conn_pool_free(struct worker *w);
void conn_finish(struct conn *c);
void conn_close(struct conn *c);
void conn_sleep(struct conn *c, double seconds);
void conn_resume(struct conn *c);
void conn_resume_later(struct conn *c);
int conn_peer_alive(struct conn *c);
double conn_budget(const struct conn *c);
void conn_set_budget(struct conn *c, double seconds);

/* lstate.c */
extern __thread struct worker *lstate_worker; /* the worker running on this thread, or NULL */
struct conn *lstate_current(lua_State *L, const char *what);
void lstate_abort(struct conn *c);
void lstate_prepare(struct worker *w, lua_State *L);
int lstate_slice_over(lua_State *L, struct conn *c);
int lstate_yield_slice(lua_State *L, struct conn *c, lua_KContext ctx, lua_KFunction k);
double lstate_now(void);
struct app *lstate_new(struct worker *w, const char *path, char *err, size_t errlen);
struct app *lstate_wrap(struct worker *w, lua_State *L, int handler_ref);
void lstate_unref(struct app *a);
void lstate_run(struct conn *c, int nargs);
int lstate_start(struct conn *c, const struct scgi_header *h, size_t n);
void lstate_release(struct conn *c);

/* lclient.c */
void lclient_open(lua_State *L);
struct lclient *lclient_push(lua_State *L, struct conn *c);
void lclient_detach(struct lclient *cl);
int luaopen_scgi_core(lua_State *L);

/* stats.c */
int stats_start(struct server *s, char *err, size_t errlen);
void stats_stop(struct server *s);
int stats_print(const char *addr);
void stats_note_status(struct conn *c, const char *p, size_t n);
void stats_request_done(struct conn *c);

/* lshared.c */
int lshared_get(lua_State *L);

/* lsocket.c */
int lsocket_connect(lua_State *L);

/* log.c */
#define slog(...) slog_at(LOG_INFO, __VA_ARGS__)

#endif
