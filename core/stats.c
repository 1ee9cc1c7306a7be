/* stats.c: the figures: the table that holds them (shared with the supervisor), what one request
   adds to them, reading a response's status from its head, and the access log line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
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

/* Keeps the method and URI for the log lines, and warns when nginx 1.22's unbuffered uploads
   make CONTENT_LENGTH (always the first header) disagree with the client's Content-Length. */
void stats_note_request(struct request_record *r, const struct scgi_header *h, size_t n) {
  const char *http_cl = NULL;
  for (size_t i = 0; i < n; i++) {
    if (h[i].name_len == 14 && memcmp(h[i].name, "REQUEST_METHOD", 14) == 0) {
      size_t m = h[i].value_len < sizeof r->method - 1 ? h[i].value_len : sizeof r->method - 1;
      memcpy(r->method, h[i].value, m);
      r->method[m] = '\0';
    } else if (h[i].name_len == 11 && memcmp(h[i].name, "REQUEST_URI", 11) == 0) {
      if (r->uri == NULL) r->uri = strdup(h[i].value);
    } else if (h[i].name_len == 19 && memcmp(h[i].name, "HTTP_CONTENT_LENGTH", 19) == 0) {
      http_cl = h[i].value;
    }
  }
  if (http_cl && strcmp(http_cl, h[0].value) != 0)
    slog_at(LOG_WARN,
            "#%llu %s %s: CONTENT_LENGTH %s but the client sent Content-Length %s: the web "
            "server passes a partial length (nginx 1.22 with scgi_request_buffering off); the "
            "handler sees %s bytes of body",
            (unsigned long long)r->id, r->method[0] ? r->method : "-", r->uri ? r->uri : "-",
            h[0].value, http_cl, h[0].value);
}
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

/* Writes s escaped into line at *n (at most cap): as a JSON string (quoted), or for the text
   line (json 0: unquoted, and a space escaped too, so a field is one word). Either way no control
   byte, no byte past ASCII and no line break reaches the log: a URI cannot forge a line. */
static void escaped(char *line, size_t *n, size_t cap, const char *s, int json) {
  static const char hex[] = "0123456789abcdef";
  if (json && *n < cap) line[(*n)++] = '"';
  for (; *s && *n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c == '"' && json) || c == '\\') {
      line[(*n)++] = '\\';
      line[(*n)++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f || (c == ' ' && !json)) { /* escaped, never bad UTF-8 */
      memcpy(line + *n, "\\u00", 4);
      line[*n + 4] = hex[c >> 4];
      line[*n + 5] = hex[c & 15];
      *n += 6;
    } else {
      line[(*n)++] = (char)c;
    }
  }
  if (json && *n < cap) line[(*n)++] = '"';
}

/* The access log line: text (time, worker, id, method, URI, status, bytes sent, ms), or the same
   fields and the process id and bytes received as one JSON object. */
static void access_line(struct worker *w, const struct request_record *r, double ms) {
  char line[8192], when[40];
  size_t n;
  const char *method = r->method[0] ? r->method : "-", *uri = r->uri ? r->uri : "-";
  log_time(when, sizeof when);
  if (w->srv->cfg.access_log_format == LOG_FORMAT_JSON) {
    n = (size_t)snprintf(line, sizeof line,
                         "{\"time\":\"%s\",\"pid\":%ld,\"worker\":%d,\"id\":%llu,\"method\":", when,
                         w->srv->pid, w->id, (unsigned long long)r->id);
    escaped(line, &n, sizeof line - 96, method, 1);
    n += (size_t)snprintf(line + n, sizeof line - n, ",\"uri\":");
    escaped(line, &n, sizeof line - 96, uri, 1);
    n += (size_t)snprintf(line + n, sizeof line - n,
                          ",\"status\":%d,\"bytes_out\":%llu,\"bytes_in\":%llu,\"ms\":%.2f}\n",
                          r->status, (unsigned long long)r->bytes_out,
                          (unsigned long long)r->bytes_in, ms);
  } else {
    n = (size_t)snprintf(line, sizeof line, "%s w%d #%llu ", when, w->id,
                         (unsigned long long)r->id);
    escaped(line, &n, sizeof line - 96, method, 0);
    line[n++] = ' ';
    escaped(line, &n, sizeof line - 96, uri, 0);
    n += (size_t)snprintf(line + n, sizeof line - n, " %d %llu %.2f\n", r->status,
                          (unsigned long long)r->bytes_out, ms);
  }
  if (n >= sizeof line) {
    n = sizeof line;
    line[n - 1] = '\n';
  }
  log_access(line, n);
}

/* Called once per connection that carried a request: figures, then the access log line. */
void stats_request_done(struct worker *w, const struct request_record *r) {
  double ms = (clock_now() - r->start) * 1000.0;
  int b = 0;
  while (ms > stat_bucket_ms[b])
    b++;
  int cls = r->status >= 100 && r->status < 600 ? r->status / 100 : 0;
  stat_add(&w->st->status[cls], 1);
  stat_add(&w->st->bytes_in, r->bytes_in);
  stat_add(&w->st->bytes_out, r->bytes_out);
  stat_add(&w->st->latency[b], 1);
  stat_add(&w->st->latency_us, (uint64_t)(ms * 1000.0));
  stat_add(&w->st->requests, 1); /* last: a reader that sees the request sees most of the rest */
  if (log_access_enabled()) access_line(w, r, ms);
}

/* ---- the table ---- */

#define TABLE_MAGIC 0x5c64u /* changes with the layout */

static size_t table_size(int nprocs, int nworkers) {
  return sizeof(struct stats_table) + (size_t)nprocs * sizeof(struct proc_stats) +
         (size_t)nprocs * (size_t)nworkers * sizeof(struct worker_stats);
}

uint64_t stats_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct stats_table *stats_table_new(int nprocs, int nworkers, int *fd) {
  size_t size = table_size(nprocs, nworkers);
  struct stats_table *t;
  if (fd) {
    *fd = memfd_create("scgi-lua-stats", MFD_CLOEXEC);
    if (*fd < 0 || ftruncate(*fd, (off_t)size) < 0) goto fail;
    t = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    if (t == MAP_FAILED) goto fail;
  } else if ((t = calloc(1, size)) == NULL) {
    return NULL;
  }
  t->magic = TABLE_MAGIC;
  t->shared = fd != NULL;
  t->nprocs = (uint32_t)nprocs;
  t->nworkers = (uint32_t)nworkers;
  t->size = size;
  stat_set(&t->started_ms, stats_wall_ms());
  return t;
fail:
  if (fd && *fd >= 0) close(*fd);
  return NULL;
}

struct stats_table *stats_table_attach(int fd) {
  struct stats_table head;
  if (pread(fd, &head, sizeof head, 0) != (ssize_t)sizeof head || head.magic != TABLE_MAGIC)
    return NULL;
  void *p = mmap(NULL, head.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? NULL : p;
}

void stats_table_free(struct stats_table *t) {
  if (t == NULL) return;
  if (t->shared)
    munmap(t, t->size);
  else
    free(t);
}

void stats_table_unmap(struct stats_table *t, int nprocs, int nworkers) {
  if (t) munmap(t, table_size(nprocs, nworkers));
}

struct proc_stats *stats_proc(struct stats_table *t, int proc) {
  return (struct proc_stats *)(t + 1) + proc;
}

struct worker_stats *stats_worker(struct stats_table *t, int proc, int worker) {
  struct worker_stats *w = (struct worker_stats *)(stats_proc(t, 0) + t->nprocs);
  return w + (size_t)proc * t->nworkers + (size_t)worker;
}
