/* stats.c: per-request figures and the access log line; the --stats endpoint (JSON over plain
   HTTP, served by the main thread) and the --status client that prints it as a table. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server.h"

const double stat_bucket_ms[STAT_BUCKETS] = {1,   2,   5,    10,   20,   50,  100,
                                             200, 500, 1000, 2000, 5000, 1e4, 1e300};

/* Reads the status of a CGI response from its first bytes (no Status header means 200). */
void stats_note_status(struct conn *c, const char *p, size_t n) {
  if (c->status) return;
  c->status = 200;
  if (n > 4096) n = 4096;
  for (size_t i = 0; i + 10 <= n; i++) {
    if ((i == 0 || p[i - 1] == '\n') && strncasecmp(p + i, "Status:", 7) == 0) {
      size_t k = i + 7;
      while (k < n && p[k] == ' ')
        k++;
      int st = 0, digits = 0;
      while (k < n && digits < 3 && p[k] >= '0' && p[k] <= '9')
        st = st * 10 + (p[k++] - '0'), digits++;
      if (digits == 3) c->status = st;
      return;
    }
    if (p[i] == '\r' && i + 3 < n && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n')
      return;
  }
}

/* Called once per connection that carried a request: figures, then the access log line. */
void stats_request_done(struct conn *c) {
  struct worker *w = c->w;
  double ms = (lstate_now() - c->start) * 1000.0;
  int b = 0;
  while (ms > stat_bucket_ms[b])
    b++;
  stat_add(&w->st.requests, 1);
  if (c->status >= 500) stat_add(&w->st.errors, 1);
  stat_add(&w->st.bytes_in, c->bytes_in);
  stat_add(&w->st.bytes_out, c->bytes_out);
  stat_add(&w->st.latency[b], 1);
  stat_set(&w->st.memory, w->mem_used);
  if (!log_access_enabled()) return;
  char line[4096];
  size_t n = log_time(line, 40);
  int m = snprintf(line + n, sizeof line - n, " w%d #%llu %s %s %d %llu %.2f\n", w->id,
                   (unsigned long long)c->id, c->method[0] ? c->method : "-", c->uri ? c->uri : "-",
                   c->status, (unsigned long long)c->bytes_out, ms);
  n += m < 0 ? 0 : (size_t)m;
  if (n >= sizeof line) {
    n = sizeof line;
    line[n - 1] = '\n';
  }
  log_access(line, n);
}

/* ---- the endpoint ---- */

struct stats_conn {
  ev_io io;
  ev_timer timer;
  struct server *srv;
  char req[1024];
  size_t len;
};

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

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

static void put_worker_json(struct buf *b, struct worker_stats *st, int id) {
  if (id >= 0)
    put(b, "{\"id\":%d,", id);
  else
    put(b, "{");
  put(b,
      "\"requests\":%llu,\"errors\":%llu,\"active\":%llu,\"connections\":%llu,"
      "\"bytes_in\":%llu,\"bytes_out\":%llu,\"lua_memory\":%llu,\"latency_ms\":{",
      LOAD(st->requests), LOAD(st->errors), LOAD(st->active), LOAD(st->connections),
      LOAD(st->bytes_in), LOAD(st->bytes_out), LOAD(st->memory));
  for (int i = 0; i < STAT_BUCKETS; i++) {
    if (i < STAT_BUCKETS - 1)
      put(b, "\"%g\":%llu,", stat_bucket_ms[i], LOAD(st->latency[i]));
    else
      put(b, "\"inf\":%llu", LOAD(st->latency[i]));
  }
  put(b, "}}");
}

static void sum_stats(struct server *s, struct worker_stats *t) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < s->nworkers; i++) {
    struct worker_stats *st = &s->workers[i].st;
    stat_add(&t->requests, LOAD(st->requests));
    stat_add(&t->errors, LOAD(st->errors));
    stat_add(&t->active, LOAD(st->active));
    stat_add(&t->connections, LOAD(st->connections));
    stat_add(&t->bytes_in, LOAD(st->bytes_in));
    stat_add(&t->bytes_out, LOAD(st->bytes_out));
    stat_add(&t->memory, LOAD(st->memory));
    for (int k = 0; k < STAT_BUCKETS; k++)
      stat_add(&t->latency[k], LOAD(st->latency[k]));
  }
}

static void render_json(struct server *s, struct buf *b) {
  struct worker_stats total;
  put(b, "{\"version\":\"%s\",\"pid\":%d,\"uptime\":%.3f,\"workers\":[", SCGI_VERSION,
      (int)getpid(), lstate_now() - s->started);
  for (int i = 0; i < s->nworkers; i++) {
    if (i) put(b, ",");
    put_worker_json(b, &s->workers[i].st, i);
  }
  put(b, "],\"total\":");
  sum_stats(s, &total);
  put_worker_json(b, &total, -1);
  put(b, "}\n");
}

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
      LOAD(st->errors), LOAD(st->active), LOAD(st->connections), LOAD(st->bytes_in),
      LOAD(st->bytes_out), (double)LOAD(st->memory) / 1048576.0, quantile(st, 0.5, q1, sizeof q1),
      quantile(st, 0.99, q2, sizeof q2));
}

static void render_text(struct server *s, struct buf *b) {
  struct worker_stats total;
  char name[16];
  put(b, "scgi-lua %s, pid %d, up %.1f s, %d workers\n\n", SCGI_VERSION, (int)getpid(),
      lstate_now() - s->started, s->nworkers);
  put(b, "%-7s %9s %7s %7s %12s %12s %12s %11s %8s %8s\n", "worker", "requests", "errors", "active",
      "connections", "bytes in", "bytes out", "Lua MiB", "p50 ms", "p99 ms");
  for (int i = 0; i < s->nworkers; i++) {
    snprintf(name, sizeof name, "%d", i);
    put_row(b, name, &s->workers[i].st);
  }
  sum_stats(s, &total);
  put_row(b, "total", &total);
}

static void stats_conn_free(struct stats_conn *sc) {
  struct ev_loop *loop = sc->srv->loop;
  ev_io_stop(loop, &sc->io);
  ev_timer_stop(loop, &sc->timer);
  close(sc->io.fd);
  free(sc);
}

static void stats_answer(struct stats_conn *sc) {
  struct buf b = {malloc(4096), 0, 4096};
  if (b.p == NULL) return;
  int text = strstr(sc->req, " /text") != NULL;
  int get = strncmp(sc->req, "GET ", 4) == 0;
  char body_start[160];
  int hn = snprintf(body_start, sizeof body_start,
                    "HTTP/1.0 %s\r\nContent-Type: %s\r\nConnection: close\r\n\r\n",
                    get ? "200 OK" : "405 Method Not Allowed",
                    text ? "text/plain; charset=utf-8" : "application/json");
  put(&b, "%s", body_start);
  if (get && text)
    render_text(sc->srv, &b);
  else if (get)
    render_json(sc->srv, &b);
  (void)hn;
  /* small answers fit the socket buffer; a client that does not read loses the rest */
  for (size_t off = 0; off < b.len;) {
    ssize_t n = send(sc->io.fd, b.p + off, b.len - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += (size_t)n;
  }
  shutdown(sc->io.fd, SHUT_WR);
  free(b.p);
}

static void on_stats_read(struct ev_loop *loop, ev_io *io, int revents) {
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
  if (n >= 0) stats_answer(sc);
  stats_conn_free(sc);
}

static void on_stats_timeout(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)revents;
  stats_conn_free((struct stats_conn *)((char *)t - offsetof(struct stats_conn, timer)));
}

static void on_stats_accept(struct ev_loop *loop, ev_io *io, int revents) {
  struct server *s = (struct server *)((char *)io - offsetof(struct server, stats_w));
  (void)revents;
  for (int i = 0; i < 16; i++) {
    int fd = accept4(s->stats_lst.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct stats_conn *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
      close(fd);
      return;
    }
    sc->srv = s;
    ev_io_init(&sc->io, on_stats_read, fd, EV_READ);
    ev_timer_init(&sc->timer, on_stats_timeout, 5., 0.);
    ev_io_start(loop, &sc->io);
    ev_timer_start(loop, &sc->timer);
  }
}

int stats_start(struct server *s, char *err, size_t errlen) {
  s->stats_lst.fd = -1;
  if (s->cfg.stats == NULL) return 0;
  if (listener_open(&s->stats_lst, s->cfg.stats, 0600, err, errlen) < 0) return -1;
  const char *n = s->stats_lst.name;
  if (!s->stats_lst.is_unix && strncmp(n, "127.", 4) != 0 && strncmp(n, "[::1]", 5) != 0) {
    snprintf(err, errlen,
             "--stats %s: the endpoint has no authentication; give it a unix path "
             "or a loopback address (127.0.0.1:PORT, [::1]:PORT)",
             s->cfg.stats);
    listener_close(&s->stats_lst);
    return -1;
  }
  ev_io_init(&s->stats_w, on_stats_accept, s->stats_lst.fd, EV_READ);
  ev_io_start(s->loop, &s->stats_w);
  return 0;
}

void stats_stop(struct server *s) {
  if (s->stats_lst.fd < 0) return;
  ev_io_stop(s->loop, &s->stats_w);
  listener_close(&s->stats_lst);
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
