/* stats.h: the figures each worker keeps (for --stats, /metrics and scgi.worker()), the record
   of one request for the access log, and the stats endpoint. No Lua here. */
#ifndef SCGI_STATS_H
#define SCGI_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct worker;

#define STAT_BUCKETS 14
extern const double stat_bucket_ms[STAT_BUCKETS]; /* upper bounds; the last is +inf */

/* A worker's figures: written by its own thread, read by the stats endpoint (relaxed atomics:
   plain loads and stores on x86, no locked instructions on the request path). */
struct worker_stats {
  _Atomic uint64_t requests, errors, connections, bytes_in, bytes_out;
  _Atomic uint64_t active_connections, active_requests, lua_memory;
  _Atomic uint64_t status[6]; /* by class: [1] 1xx .. [5] 5xx, [0] none sent */
  _Atomic uint64_t latency[STAT_BUCKETS], latency_us;
  _Atomic uint64_t cpu_stops, memory_stops, timeout_stops, refused, bad_heads;
  _Atomic uint64_t tasks, timers, pooled_sockets, reloads, reload_failures, recycles;
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

/* Counts a finished request and writes its access log line. */
void stats_request_done(struct worker *w, const struct request_record *r);

int stats_start(struct server *s, char *err, size_t errlen);
void stats_stop(struct server *s);
int stats_print(const char *addr);

#endif
