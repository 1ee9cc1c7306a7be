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

#include "clock.h"
#include "log.h"
#include "server.h"
#include "stats.h"
#include "worker.h"

const double stat_bucket_ms[STAT_BUCKETS] = {1,   2,   5,    10,   20,   50,  100,
                                             200, 500, 1000, 2000, 5000, 1e4, 1e300};

/* Whether p[0..n) is lit (lower case), ignoring case. */
static int is_name(const char *p, size_t n, const char *lit, size_t litlen) {
  if (n != litlen) return 0;
  for (size_t i = 0; i < n; i++)
    if ((p[i] | 0x20) != lit[i]) return 0;
  return 1;
}

static int three_digits(const char *p, const char *end) {
  if (end - p < 3 || p[0] < '1' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2] < '0' ||
      p[2] > '9')
    return 0;
  return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

#define BAD(msg)                                                                                   \
  do {                                                                                             \
    *why = (msg);                                                                                  \
    r->status = 502;                                                                               \
    return -1;                                                                                     \
  } while (0)

/* The bytes a response header's name may hold, as far as nginx's parser goes (not ':'). */
static const unsigned char name_char[256] = {
    [33 ... 57] = 1,
    [59 ... 126] = 1,
    [128 ... 255] = 1,
};

/* What nginx's header line parser refuses (it answers 502): a name with a space, a control
   character or DEL, or starting with ':'; a NUL in a value; a Status that is not 3 digits. A
   name without a ':' is taken as a header with an empty value, as nginx does. */
static int check_head(struct request_record *r, const char *p, size_t n, const char **why) {
  const char *q = p, *end = p + n;
  int status = 0, location = 0;
  if (n >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && p[8] == ' ') { /* a status line */
    if ((status = three_digits(p + 9, end)) == 0) BAD("an HTTP status line without a status");
    const char *nl = memchr(p, '\n', n);
    q = nl ? nl + 1 : end;
  }
  while (q < end) {
    const char *nl = memchr(q, '\n', (size_t)(end - q)), *eol = nl ? nl : end, *v = q;
    if (eol > q && eol[-1] == '\r') eol--;
    if (eol == q && nl) break; /* the empty line: the end of the head */
    if (*q == ':') BAD("a header line starts with ':'");
    while (v < eol && name_char[(unsigned char)*v])
      v++;
    if (v < eol && *v != ':') BAD("a header name holds a space or a control character");
    size_t len = (size_t)(v - q);
    if (v < eol && memchr(v, '\0', (size_t)(eol - v))) BAD("a header value holds a NUL byte");
    if (len == 6 && is_name(q, len, "status", 6)) {
      for (v++; v < eol && (*v == ' ' || *v == '\t'); v++)
        ;
      if ((status = three_digits(v, eol)) == 0) BAD("its Status is not a number");
    } else if (len == 8 && is_name(q, len, "location", 8)) {
      location = 1;
    }
    if (nl == NULL) {
      if (n >= 4096) BAD("no end of the head in its first 4 KiB (nginx's scgi_buffer_size)");
      break; /* a head written in pieces: what came so far is fine */
    }
    q = nl + 1;
  }
  r->status = status ? status : location ? 302 : 200;
  return 0;
}

int stats_note_head(struct head_cache *hc, struct request_record *r, const char *p, size_t n,
                    const char **why) {
  size_t len = 0, m = n < sizeof hc->head ? n : sizeof hc->head;
  for (const char *q = p, *nl; (nl = memchr(q, '\n', m - (size_t)(q - p))) != NULL; q = nl + 1)
    if ((size_t)(nl - p) + 2 < m && nl[1] == '\r' && nl[2] == '\n') { /* CRLF CRLF: its end */
      len = (size_t)(nl - p) + 3;
      break;
    }
  r->head_checked = 1;
  if (len && len == hc->len && memcmp(p, hc->head, len) == 0) {
    r->status = hc->status;
    return 0;
  }
  if (check_head(r, p, n, why) < 0) return -1;
  if (len) { /* a whole head, and a good one: the next response may be the same */
    memcpy(hc->head, p, len);
    hc->len = len;
    hc->status = r->status;
  }
  return 0;
}

/* Called once per connection that carried a request: figures, then the access log line. */
void stats_request_done(struct worker *w, const struct request_record *r) {
  double ms = (clock_now() - r->start) * 1000.0;
  int b = 0;
  while (ms > stat_bucket_ms[b])
    b++;
  int cls = r->status >= 100 && r->status < 600 ? r->status / 100 : 0;
  stat_add(&w->st.requests, 1);
  stat_add(&w->st.status[cls], 1);
  stat_add(&w->st.bytes_in, r->bytes_in);
  stat_add(&w->st.bytes_out, r->bytes_out);
  stat_add(&w->st.latency[b], 1);
  stat_add(&w->st.latency_us, (uint64_t)(ms * 1000.0));
  if (!log_access_enabled()) return;
  char line[4096];
  size_t n = log_time(line, 40);
  int m = snprintf(line + n, sizeof line - n, " w%d #%llu %s %s %d %llu %.2f\n", w->id,
                   (unsigned long long)r->id, r->method[0] ? r->method : "-", r->uri ? r->uri : "-",
                   r->status, (unsigned long long)r->bytes_out, ms);
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
      "\"bad_heads\":%llu,\"reloads\":%llu,\"reload_failures\":%llu,\"latency_ms\":{",
      LOAD(st->cpu_stops), LOAD(st->memory_stops), LOAD(st->timeout_stops), LOAD(st->refused),
      LOAD(st->bad_heads), LOAD(st->reloads), LOAD(st->reload_failures));
  for (int i = 0; i < STAT_BUCKETS; i++) {
    if (i < STAT_BUCKETS - 1)
      put(b, "\"%g\":%llu,", stat_bucket_ms[i], LOAD(st->latency[i]));
    else
      put(b, "\"inf\":%llu", LOAD(st->latency[i]));
  }
  put(b, "}}");
}

/* Adds every figure of a worker to t. */
static void add_stats(struct worker_stats *t, struct worker_stats *st) {
  _Atomic uint64_t *dst = (_Atomic uint64_t *)t, *src = (_Atomic uint64_t *)st;
  for (size_t k = 0; k < sizeof *t / sizeof *dst; k++)
    stat_add(&dst[k], LOAD(src[k]));
}

static void sum_stats(struct server *s, struct worker_stats *t) {
  memset(t, 0, sizeof *t);
  for (int i = 0; i < s->nworkers; i++)
    add_stats(t, &s->workers[i].st);
}

static void render_json(struct server *s, struct buf *b) {
  struct worker_stats total;
  put(b, "{\"version\":\"%s\",\"pid\":%d,\"uptime\":%.3f,\"workers\":[", SCGI_VERSION,
      (int)getpid(), clock_now() - s->started);
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
      LOAD(st->errors), LOAD(st->active_connections), LOAD(st->connections), LOAD(st->bytes_in),
      LOAD(st->bytes_out), (double)LOAD(st->lua_memory) / 1048576.0,
      quantile(st, 0.5, q1, sizeof q1), quantile(st, 0.99, q2, sizeof q2));
}

static void render_text(struct server *s, struct buf *b) {
  struct worker_stats total;
  char name[16];
  put(b, "scgi-lua %s, pid %d, up %.1f s, %d workers\n\n", SCGI_VERSION, (int)getpid(),
      clock_now() - s->started, s->nworkers);
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
  if (listener_open(&s->stats_lst, s->cfg.stats, 0600, 64, err, errlen) < 0) return -1;
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
