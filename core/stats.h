/* stats.h: the figures each worker keeps (for --stats, /metrics and scgi.worker()), in a table
   the supervising process shares with its serving processes; the record of one request for the
   access log; and the stats endpoint. No Lua here. */
#ifndef SCGI_STATS_H
#define SCGI_STATS_H

#include <ev.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct worker;

#define STAT_BUCKETS 14
extern const double stat_bucket_ms[STAT_BUCKETS]; /* upper bounds; the last is +inf */

/* A worker's figures: written by its own thread, read by the stats endpoint (relaxed atomics:
   plain loads and stores on x86, no locked instructions on the request path). Only
   _Atomic uint64_t fields: they are summed field by field. */
struct worker_stats {
  _Atomic uint64_t requests, errors, connections, bytes_in, bytes_out;
  _Atomic uint64_t active_connections, active_requests, lua_memory;
  _Atomic uint64_t status[6]; /* by class: [1] 1xx .. [5] 5xx, [0] none sent */
  _Atomic uint64_t latency[STAT_BUCKETS], latency_us;
  _Atomic uint64_t cpu_stops, memory_stops, timeout_stops, refused, bad_heads;
  _Atomic uint64_t tasks, timers, pooled_sockets, reloads, reload_failures, recycles;
  _Atomic uint64_t pool_reused, pool_new; /* outbound connects: from the pool, and not */
  _Atomic uint64_t load_timeouts;         /* loads of the app stopped by --load-timeout */
};

/* A serving process, as the supervisor sees it (pid 0: a free slot). */
struct proc_stats {
  _Atomic uint64_t pid, generation, ready, started_ms;
};

/* The figures of the whole server: a header, then nprocs process slots, then nprocs x nworkers
   worker slots. In shared memory under a supervisor, in plain memory without one. */
struct stats_table {
  uint32_t magic, nprocs, nworkers, shared;
  _Atomic uint64_t respawns, backoff_ms, upgrades, upgrade_failures;
  _Atomic uint64_t spawn_failures;                 /* serving processes that could not be started */
  _Atomic uint64_t last_reload_ms, last_reload_ok; /* wall clock, ms; 1 if it loaded */
  _Atomic uint64_t started_ms;                     /* wall clock */
  _Atomic uint64_t next_id; /* request ids: unique over every serving process and respawn */
  _Atomic uint64_t log_reopen_failures; /* SIGUSR1 reopens that failed, in any process */
  size_t size;
};

static inline void stat_add(_Atomic uint64_t *v, uint64_t n) {
  atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void stat_set(_Atomic uint64_t *v, uint64_t n) {
  atomic_store_explicit(v, n, memory_order_relaxed);
}

static inline uint64_t stat_get(_Atomic uint64_t *v) {
  return atomic_load_explicit(v, memory_order_relaxed);
}

/* A table for nprocs processes of nworkers workers: shared (*fd then holds its memory file, to
   pass to serving processes) or not (fd NULL). NULL when out of memory. */
struct stats_table *stats_table_new(int nprocs, int nworkers, int *fd);
/* The table a supervisor passed as fd; NULL if it is not one. */
struct stats_table *stats_table_attach(int fd);
void stats_table_free(struct stats_table *t);
/* The supervisor's shared table, unmapped by the shape it was made with: its header is writable
   by the serving processes. */
void stats_table_unmap(struct stats_table *t, int nprocs, int nworkers);
struct proc_stats *stats_proc(struct stats_table *t, int proc);
struct worker_stats *stats_worker(struct stats_table *t, int proc, int worker);
uint64_t stats_wall_ms(void);

/* One request as the access log and the figures see it. */
struct request_record {
  uint64_t id;
  char method[12];
  char *uri;        /* REQUEST_URI (malloc'd), or NULL */
  int status;       /* what was sent: read from the response head, or the server's own answer */
  int head_checked; /* the response head was looked at */
  uint64_t bytes_in, bytes_out;
  double start; /* accept time (monotonic seconds) */
};

/* The last response head a worker checked: handlers tend to send the same one every time. */
struct head_cache {
  char head[256];
  size_t len;
  int status;
};

/* Reads the status from the first bytes of a response (a CGI head: Status, else 302 with a
   Location, else 200; or an "HTTP/1.x NNN" line), once. Returns 0, or -1 when the bytes are not
   a head nginx accepts (it would answer 502); then why names the fault. */
int stats_note_head(struct head_cache *hc, struct request_record *r, const char *p, size_t n,
                    const char **why);

struct scgi_header;
/* Keeps REQUEST_METHOD and REQUEST_URI of the parsed header block in the record. */
void stats_note_request(struct request_record *r, const struct scgi_header *h, size_t n);

/* Counts a finished request and writes its access log line (text, or JSON with json set). */
void stats_request_done(struct worker *w, const struct request_record *r);

/* The stats endpoint: JSON at /, a table at /text, Prometheus text at /metrics. It holds at most
   STATS_MAX_CONNS connections at once (more are closed at once). */
#define STATS_MAX_CONNS 64
struct stats_web {
  struct listener lst;
  ev_io w;
  struct ev_loop *loop;
  struct stats_table *t;
  uint32_t nprocs, nworkers; /* the table's shape, as made (not read from it again) */
  double started;            /* monotonic */
  ev_timer retry;            /* out of descriptors: accepting paused */
  int nconns, emfile_logged; /* connections open now (at most STATS_MAX_CONNS) */
};

/* Opens the endpoint on addr (a unix path or a loopback address); -1 with a message in err. */
int stats_web_start(struct stats_web *sw, const char *addr, struct ev_loop *loop,
                    struct stats_table *t, char *err, size_t errlen);
void stats_web_stop(struct stats_web *sw);
/* --status ADDR: prints the figures of the server whose --stats is ADDR. */
int stats_print(const char *addr);

#endif
