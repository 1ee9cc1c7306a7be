/* statsweb.c: the --stats endpoint (plain HTTP on a unix path or a loopback address, served by a
   main loop): the figures of every serving process and worker as JSON at /, a table at /text,
   the Prometheus text format at /metrics; and the --status client. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "server.h"
#include "stats.h"

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

struct stats_conn {
  ev_io io; /* first member */
  ev_timer timer;
  struct stats_web *sw;
  char req[1024];
  size_t len;
};

struct buf {
  char *p;
  size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...) {
  va_list ap;
  for (;;) {
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    char *q = realloc(b->p, b->cap * 2 + (size_t)n);
    if (q == NULL) return;
    b->p = q;
    b->cap = b->cap * 2 + (size_t)n;
  }
}

/* A worker's figures, found with the endpoint's own copy of the table's shape: the table's header
   is shared with the serving processes, which may run as another user and must not steer where
   the supervisor reads. */
static struct worker_stats *worker_of(struct stats_web *sw, int proc, int worker) {
  struct worker_stats *w = (struct worker_stats *)(stats_proc(sw->t, 0) + sw->nprocs);
  return w + (size_t)proc * sw->nworkers + (size_t)worker;
}

/* Calls f for each worker of each live serving process, numbering workers across processes. */
typedef void (*worker_fn)(struct buf *b, struct stats_web *t, int proc, int worker, int index,
                          void *arg);
static int each_worker(struct buf *b, struct stats_web *t, worker_fn f, void *arg) {
  int index = 0;
  for (uint32_t p = 0; p < t->nprocs; p++) {
    if (LOAD(stats_proc(t->t, (int)p)->pid) == 0) continue;
    for (uint32_t w = 0; w < t->nworkers; w++)
      f(b, t, (int)p, (int)w, index++, arg);
  }
  return index;
}

static void add_worker(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  struct worker_stats *dst = arg, *src = worker_of(t, p, w);
  _Atomic uint64_t *d = (_Atomic uint64_t *)dst, *s = (_Atomic uint64_t *)src;
  (void)b;
  (void)i;
  for (size_t k = 0; k < sizeof *dst / sizeof *d; k++)
    stat_add(&d[k], LOAD(s[k]));
}

static int live_procs(struct stats_web *t) {
  int n = 0;
  for (uint32_t p = 0; p < t->nprocs; p++)
    n += LOAD(stats_proc(t->t, (int)p)->pid) != 0;
  return n;
}

/* ---- JSON ---- */

static void put_figures(struct buf *b, struct worker_stats *st) {
  put(b,
      "\"requests\":%llu,\"errors\":%llu,\"connections\":%llu,\"active_connections\":%llu,"
      "\"active_requests\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"lua_memory\":%llu,",
      LOAD(st->requests), LOAD(st->errors), LOAD(st->connections), LOAD(st->active_connections),
      LOAD(st->active_requests), LOAD(st->bytes_in), LOAD(st->bytes_out), LOAD(st->lua_memory));
  put(b,
      "\"status\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu,"
      "\"none\":%llu},",
      LOAD(st->status[1]), LOAD(st->status[2]), LOAD(st->status[3]), LOAD(st->status[4]),
      LOAD(st->status[5]), LOAD(st->status[0]));
  put(b,
      "\"cpu_stops\":%llu,\"memory_stops\":%llu,\"timeout_stops\":%llu,\"refused\":%llu,"
      "\"bad_heads\":%llu,\"tasks\":%llu,\"timers\":%llu,\"pooled_sockets\":%llu,"
      "\"reloads\":%llu,\"reload_failures\":%llu,\"recycles\":%llu,\"pool_reused\":%llu,"
      "\"pool_new\":%llu,\"load_timeouts\":%llu,\"latency_ms\":{",
      LOAD(st->cpu_stops), LOAD(st->memory_stops), LOAD(st->timeout_stops), LOAD(st->refused),
      LOAD(st->bad_heads), LOAD(st->tasks), LOAD(st->timers), LOAD(st->pooled_sockets),
      LOAD(st->reloads), LOAD(st->reload_failures), LOAD(st->recycles), LOAD(st->pool_reused),
      LOAD(st->pool_new), LOAD(st->load_timeouts));
  for (int i = 0; i < STAT_BUCKETS; i++) {
    if (i < STAT_BUCKETS - 1)
      put(b, "\"%g\":%llu,", stat_bucket_ms[i], LOAD(st->latency[i]));
    else
      put(b, "\"inf\":%llu", LOAD(st->latency[i]));
  }
  put(b, "}");
}

static void json_worker(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  (void)arg;
  put(b, "%s{\"id\":%d,\"process\":%d,", i ? "," : "", i, p);
  put_figures(b, worker_of(t, p, w));
  put(b, "}");
}

static void render_json(struct stats_web *sw, struct buf *b) {
  struct stats_web *t = sw;
  struct worker_stats total;
  memset(&total, 0, sizeof total);
  put(b,
      "{\"version\":\"%s\",\"pid\":%d,\"uptime\":%.3f,\"respawns\":%llu,\"spawn_failures\":%llu,"
      "\"log_reopen_failures\":%llu,\"processes\":[",
      SCGI_VERSION, (int)getpid(), clock_now() - sw->started, LOAD(t->t->respawns),
      LOAD(t->t->spawn_failures), LOAD(t->t->log_reopen_failures));
  for (uint32_t p = 0, first = 1; p < t->nprocs; p++) {
    struct proc_stats *ps = stats_proc(t->t, (int)p);
    if (LOAD(ps->pid) == 0) continue;
    put(b, "%s{\"slot\":%u,\"pid\":%llu,\"generation\":%llu,\"ready\":%s}", first ? "" : ",", p,
        LOAD(ps->pid), LOAD(ps->generation), LOAD(ps->ready) ? "true" : "false");
    first = 0;
  }
  put(b, "],\"workers\":[");
  each_worker(b, t, json_worker, NULL);
  put(b, "],\"total\":{");
  each_worker(b, t, add_worker, &total);
  put_figures(b, &total);
  put(b, "}}\n");
}

/* ---- the table for --status ---- */

/* The bucket bound under which a share q of the requests finished. */
static const char *quantile(struct worker_stats *st, double q, char *out, size_t len) {
  unsigned long long total = 0, seen = 0;
  for (int i = 0; i < STAT_BUCKETS; i++)
    total += LOAD(st->latency[i]);
  if (total == 0) return "-";
  for (int i = 0; i < STAT_BUCKETS; i++) {
    seen += LOAD(st->latency[i]);
    if ((double)seen >= q * (double)total) {
      if (i == STAT_BUCKETS - 1) return ">10000";
      snprintf(out, len, "<%g", stat_bucket_ms[i]);
      return out;
    }
  }
  return "-";
}

static void put_row(struct buf *b, const char *name, struct worker_stats *st) {
  char q1[24], q2[24];
  put(b, "%-7s %9llu %7llu %7llu %12llu %12llu %12llu %11.1f %8s %8s\n", name, LOAD(st->requests),
      LOAD(st->errors), LOAD(st->active_connections), LOAD(st->connections), LOAD(st->bytes_in),
      LOAD(st->bytes_out), (double)LOAD(st->lua_memory) / 1048576.0,
      quantile(st, 0.5, q1, sizeof q1), quantile(st, 0.99, q2, sizeof q2));
}

static void text_worker(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  char name[16];
  (void)arg;
  snprintf(name, sizeof name, "%d", i);
  put_row(b, name, worker_of(t, p, w));
}

static void render_text(struct stats_web *sw, struct buf *b) {
  struct stats_web *t = sw;
  struct worker_stats total;
  memset(&total, 0, sizeof total);
  int nprocs = live_procs(t);
  put(b, "scgi-lua %s, pid %d, up %.1f s, %d worker%s", SCGI_VERSION, (int)getpid(),
      clock_now() - sw->started, nprocs * (int)t->nworkers, nprocs * t->nworkers == 1 ? "" : "s");
  if (nprocs > 1) put(b, " in %d processes", nprocs);
  put(b, "\n\n%-7s %9s %7s %7s %12s %12s %12s %11s %8s %8s\n", "worker", "requests", "errors",
      "active", "connections", "bytes in", "bytes out", "Lua MiB", "p50 ms", "p99 ms");
  each_worker(b, t, text_worker, NULL);
  each_worker(b, t, add_worker, &total);
  put_row(b, "total", &total);
}

/* ---- Prometheus ---- */

static void head(struct buf *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP scgi_%s %s\n# TYPE scgi_%s %s\n", name, help, name, type);
}

/* One sample per worker of the field at offset off of struct worker_stats. */
struct per_worker {
  const char *name;
  size_t off;
};

static void prom_sample(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  struct per_worker *m = arg;
  _Atomic uint64_t *v = (_Atomic uint64_t *)((char *)worker_of(t, p, w) + m->off);
  (void)i;
  put(b, "scgi_%s{process=\"%d\",worker=\"%d\"} %llu\n", m->name, p, w, LOAD(*v));
}

static void per_worker(struct buf *b, struct stats_web *t, const char *name, const char *type,
                       const char *help, size_t off) {
  struct per_worker m = {name, off};
  head(b, name, type, help);
  each_worker(b, t, prom_sample, &m);
}

#define F(field) offsetof(struct worker_stats, field)

static void prom_classes(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  static const char *const cls[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  struct worker_stats *st = worker_of(t, p, w);
  (void)i;
  (void)arg;
  for (int k = 0; k < 6; k++)
    put(b, "scgi_requests_total{process=\"%d\",worker=\"%d\",class=\"%s\"} %llu\n", p, w, cls[k],
        LOAD(st->status[k]));
}

static void prom_histogram(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  struct worker_stats *st = worker_of(t, p, w);
  unsigned long long seen = 0;
  (void)i;
  (void)arg;
  for (int k = 0; k < STAT_BUCKETS; k++) {
    seen += LOAD(st->latency[k]);
    if (k < STAT_BUCKETS - 1)
      put(b, "scgi_request_duration_seconds_bucket{process=\"%d\",worker=\"%d\",le=\"%g\"} %llu\n",
          p, w, stat_bucket_ms[k] / 1000.0, seen);
    else
      put(b,
          "scgi_request_duration_seconds_bucket{process=\"%d\",worker=\"%d\",le=\"+Inf\"} %llu\n",
          p, w, seen);
  }
  put(b, "scgi_request_duration_seconds_sum{process=\"%d\",worker=\"%d\"} %.6f\n", p, w,
      (double)LOAD(st->latency_us) / 1e6);
  put(b, "scgi_request_duration_seconds_count{process=\"%d\",worker=\"%d\"} %llu\n", p, w, seen);
}

static void prom_reloads(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  struct worker_stats *st = worker_of(t, p, w);
  (void)i;
  (void)arg;
  put(b, "scgi_reloads_total{process=\"%d\",worker=\"%d\",result=\"ok\"} %llu\n", p, w,
      LOAD(st->reloads));
  put(b, "scgi_reloads_total{process=\"%d\",worker=\"%d\",result=\"failed\"} %llu\n", p, w,
      LOAD(st->reload_failures));
}

static void prom_stops(struct buf *b, struct stats_web *t, int p, int w, int i, void *arg) {
  struct worker_stats *st = worker_of(t, p, w);
  (void)i;
  (void)arg;
  put(b, "scgi_stops_total{process=\"%d\",worker=\"%d\",reason=\"cpu_limit\"} %llu\n", p, w,
      LOAD(st->cpu_stops));
  put(b, "scgi_stops_total{process=\"%d\",worker=\"%d\",reason=\"memory_limit\"} %llu\n", p, w,
      LOAD(st->memory_stops));
  put(b, "scgi_stops_total{process=\"%d\",worker=\"%d\",reason=\"request_timeout\"} %llu\n", p, w,
      LOAD(st->timeout_stops));
}

static void render_prometheus(struct stats_web *sw, struct buf *b) {
  struct stats_web *t = sw;
  head(b, "info", "gauge", "The server's version.");
  put(b, "scgi_info{version=\"%s\"} 1\n", SCGI_VERSION);
  head(b, "uptime_seconds", "gauge", "Seconds since the server started.");
  put(b, "scgi_uptime_seconds %.3f\n", clock_now() - sw->started);
  head(b, "processes", "gauge", "Serving processes running.");
  put(b, "scgi_processes %d\n", live_procs(t));
  head(b, "respawns_total", "counter", "Serving processes started again after one died.");
  put(b, "scgi_respawns_total %llu\n", LOAD(t->t->respawns));
  head(b, "spawn_failures_total", "counter",
       "Serving processes that could not be started (no descriptor for the pipe, fork or exec "
       "failing); each is tried again with the crash backoff.");
  put(b, "scgi_spawn_failures_total %llu\n", LOAD(t->t->spawn_failures));
  head(b, "crash_backoff_seconds", "gauge",
       "How long the supervisor waits before it starts a "
       "serving process again (a crash loop).");
  put(b, "scgi_crash_backoff_seconds %.3f\n", (double)LOAD(t->t->backoff_ms) / 1000.0);
  head(b, "log_reopen_failures_total", "counter",
       "Log files a SIGUSR1 could not reopen (the old file is written on).");
  put(b, "scgi_log_reopen_failures_total %llu\n", LOAD(t->t->log_reopen_failures));
  head(b, "upgrades_total", "counter", "Binary upgrades (SIGUSR2), by result.");
  put(b, "scgi_upgrades_total{result=\"ok\"} %llu\nscgi_upgrades_total{result=\"failed\"} %llu\n",
      LOAD(t->t->upgrades), LOAD(t->t->upgrade_failures));
  head(b, "last_reload_timestamp_seconds", "gauge", "When the app was last reloaded (0: never).");
  put(b, "scgi_last_reload_timestamp_seconds %.3f\n", (double)LOAD(t->t->last_reload_ms) / 1000.0);
  head(b, "last_reload_success", "gauge", "1 if the last reload loaded the app, else 0.");
  put(b, "scgi_last_reload_success %llu\n", LOAD(t->t->last_reload_ok));
  head(b, "requests_total", "counter", "Requests answered, by status class (none: nothing sent).");
  each_worker(b, t, prom_classes, NULL);
  head(b, "request_duration_seconds", "histogram", "Time from accept to close.");
  each_worker(b, t, prom_histogram, NULL);
  per_worker(b, t, "errors_total", "counter", "Handler errors, stops and bad response heads.",
             F(errors));
  per_worker(b, t, "connections_total", "counter", "Connections accepted.", F(connections));
  per_worker(b, t, "refused_total", "counter", "Connections over --max-connections (503).",
             F(refused));
  per_worker(b, t, "bad_heads_total", "counter", "Responses that did not start with a CGI head.",
             F(bad_heads));
  per_worker(b, t, "received_bytes_total", "counter", "Bytes read from the web server.",
             F(bytes_in));
  per_worker(b, t, "sent_bytes_total", "counter", "Bytes written to the web server.", F(bytes_out));
  per_worker(b, t, "lua_memory_bytes", "gauge", "Lua memory of the worker's states.",
             F(lua_memory));
  per_worker(b, t, "open_connections", "gauge", "Connections open now.", F(active_connections));
  per_worker(b, t, "active_requests", "gauge", "Requests whose handler or tasks run now.",
             F(active_requests));
  per_worker(b, t, "tasks", "gauge", "Tasks scgi.spawn started that still run.", F(tasks));
  per_worker(b, t, "timers", "gauge", "Pending scgi.timer and scgi.every timers.", F(timers));
  per_worker(b, t, "pooled_connections", "gauge", "Idle outbound connections in the pool.",
             F(pooled_sockets));
  per_worker(b, t, "pool_reused_total", "counter",
             "Outbound connects answered from the pool (setkeepalive).", F(pool_reused));
  per_worker(b, t, "pool_new_total", "counter", "Outbound connects that opened a connection.",
             F(pool_new));
  head(b, "stops_total", "counter", "Requests stopped by a limit.");
  each_worker(b, t, prom_stops, NULL);
  head(b, "reloads_total", "counter", "App reloads (SIGHUP, --reload-on-change), by result.");
  each_worker(b, t, prom_reloads, NULL);
  per_worker(b, t, "recycles_total", "counter",
             "Fresh Lua states built by --max-requests and --max-lua-memory.", F(recycles));
  per_worker(b, t, "load_timeouts_total", "counter",
             "Loads of the app (start, reload, recycle) stopped by --load-timeout.",
             F(load_timeouts));
}

/* ---- serving ---- */

static void conn_free(struct stats_conn *sc) {
  struct ev_loop *loop = sc->sw->loop;
  ev_io_stop(loop, &sc->io);
  ev_timer_stop(loop, &sc->timer);
  close(sc->io.fd);
  sc->sw->nconns--;
  free(sc);
}

static void answer(struct stats_conn *sc) {
  struct buf b = {malloc(8192), 0, 8192};
  if (b.p == NULL) return;
  int get = strncmp(sc->req, "GET ", 4) == 0;
  const char *path = get ? sc->req + 4 : "";
  int text = strncmp(path, "/text", 5) == 0, metrics = strncmp(path, "/metrics", 8) == 0;
  put(&b, "HTTP/1.0 %s\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
      get ? "200 OK" : "405 Method Not Allowed",
      metrics ? "text/plain; version=0.0.4"
      : text  ? "text/plain; charset=utf-8"
              : "application/json");
  if (get && metrics)
    render_prometheus(sc->sw, &b);
  else if (get && text)
    render_text(sc->sw, &b);
  else if (get)
    render_json(sc->sw, &b);
  /* small answers fit the socket buffer; a client that does not read loses the rest */
  for (size_t off = 0; off < b.len;) {
    ssize_t n = send(sc->io.fd, b.p + off, b.len - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += (size_t)n;
  }
  shutdown(sc->io.fd, SHUT_WR);
  free(b.p);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents) {
  struct stats_conn *sc = (struct stats_conn *)io;
  (void)loop;
  (void)revents;
  ssize_t n = recv(io->fd, sc->req + sc->len, sizeof sc->req - 1 - sc->len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) sc->len += (size_t)n;
  sc->req[sc->len] = '\0';
  if (n > 0 && !strstr(sc->req, "\r\n\r\n") && !strstr(sc->req, "\n\n") &&
      sc->len < sizeof sc->req - 1)
    return;
  if (n >= 0) answer(sc);
  conn_free(sc);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)revents;
  conn_free((struct stats_conn *)((char *)t - offsetof(struct stats_conn, timer)));
}

static int out_of_descriptors(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* Takes up to 16 clients; past STATS_MAX_CONNS open ones, a client is closed at once. Out of
   descriptors, accepting pauses for 100 ms (logged once per episode) rather than spin on a
   listener it cannot accept from. */
static void on_accept(struct ev_loop *loop, ev_io *io, int revents) {
  struct stats_web *sw = (struct stats_web *)((char *)io - offsetof(struct stats_web, w));
  (void)revents;
  for (int i = 0; i < 16; i++) {
    int fd = accept4(sw->lst.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && out_of_descriptors(errno)) {
      if (!sw->emfile_logged)
        slog_at(LOG_ERROR, "stats: cannot accept: %s; pausing until descriptors free up",
                strerror(errno));
      sw->emfile_logged = 1;
      ev_io_stop(loop, &sw->w);
      ev_timer_set(&sw->retry, 0.1, 0.); /* a timer that fired keeps no interval to start again */
      ev_timer_start(loop, &sw->retry);
      return;
    }
    if (fd < 0) {
      if (errno == EAGAIN) sw->emfile_logged = 0;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    struct stats_conn *sc = sw->nconns < STATS_MAX_CONNS ? calloc(1, sizeof *sc) : NULL;
    if (sc == NULL) {
      close(fd);
      continue;
    }
    sw->nconns++;
    sc->sw = sw;
    ev_io_init(&sc->io, on_read, fd, EV_READ);
    ev_timer_init(&sc->timer, on_timeout, 5., 0.);
    ev_io_start(loop, &sc->io);
    ev_timer_start(loop, &sc->timer);
  }
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents) {
  struct stats_web *sw = (struct stats_web *)((char *)t - offsetof(struct stats_web, retry));
  ev_io_start(loop, &sw->w);
  on_accept(loop, &sw->w, revents);
}

int stats_web_start(struct stats_web *sw, const char *addr, struct ev_loop *loop,
                    struct stats_table *t, char *err, size_t errlen) {
  sw->lst.fd = -1;
  sw->loop = loop;
  sw->t = t;
  sw->nprocs = t->nprocs; /* the table is new: no serving process has seen it yet */
  sw->nworkers = t->nworkers;
  sw->started = clock_now();
  if (addr == NULL) return 0;
  if (listener_open(&sw->lst, addr, 0600, 64, err, errlen) < 0) return -1;
  const char *n = sw->lst.name;
  if (!sw->lst.is_unix && strncmp(n, "127.", 4) != 0 && strncmp(n, "[::1]", 5) != 0) {
    snprintf(err, errlen,
             "--stats %s: the endpoint has no authentication; give it a unix path or a loopback "
             "address (127.0.0.1:PORT, [::1]:PORT)",
             addr);
    listener_close(&sw->lst);
    return -1;
  }
  ev_io_init(&sw->w, on_accept, sw->lst.fd, EV_READ);
  ev_io_start(loop, &sw->w);
  ev_timer_init(&sw->retry, on_retry, 0.1, 0.);
  return 0;
}

void stats_web_stop(struct stats_web *sw) {
  if (sw->lst.fd < 0) return;
  ev_io_stop(sw->loop, &sw->w);
  ev_timer_stop(sw->loop, &sw->retry);
  listener_close(&sw->lst);
}

/* --status ADDR: asks a running server for its figures and prints them as a table. */
int stats_print(const char *addr) {
  int fd = -1;
  struct sockaddr_un su = {.sun_family = AF_UNIX};
  const char *path = strncmp(addr, "unix:", 5) == 0 ? addr + 5 : addr;
  if (path[0] == '/' || path[0] == '.') {
    snprintf(su.sun_path, sizeof su.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&su, sizeof su) < 0) {
      close(fd);
      fd = -1;
    }
  } else {
    fd = addr_connect_tcp(addr);
  }
  if (fd < 0) {
    fprintf(stderr, "scgi-lua: cannot reach the stats endpoint %s: %s\n", addr, strerror(errno));
    return 1;
  }
  const char req[] = "GET /text HTTP/1.0\r\n\r\n";
  if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0) {
    fprintf(stderr, "scgi-lua: %s: %s\n", addr, strerror(errno));
    close(fd);
    return 1;
  }
  char buf[65536];
  size_t len = 0;
  ssize_t n;
  while (len < sizeof buf - 1 && (n = recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0)
    len += (size_t)n;
  close(fd);
  buf[len] = '\0';
  char *body = strstr(buf, "\r\n\r\n");
  if (body == NULL || strncmp(buf, "HTTP/1.0 200", 12) != 0) {
    fprintf(stderr, "scgi-lua: %s did not answer like a scgi-lua stats endpoint\n", addr);
    return 1;
  }
  fputs(body + 4, stdout);
  return 0;
}
