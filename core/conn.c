/* conn.c: one client connection: read the header block, hand the request to its owner, carry
   the owner's reads and writes, flush, drain, close. Every socket call is non-blocking; waiting
   is done by the worker's loop. */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "refuse.h"
#include "server.h"
#include "worker.h"

#define IN_START 4096          /* the header block's first buffer */
#define OUT_CAP (64 * 1024)    /* the response buffer; larger writes go straight out */
#define IN_KEEP (64 * 1024)    /* a body buffer grown past IN_SHRINK is cut back to this */
#define IN_SHRINK (256 * 1024) /* once drained */
#define IN_BODY (256 * 1024)   /* a body read takes up to this much from the socket at once */
#define CONN_POOL 256          /* idle conns a worker keeps, with their buffers */
#define FLUSH_MIN 1.0          /* seconds a response gets to flush after its budget ran out */

static const char *logm(const struct conn *c) { return c->rec.method[0] ? c->rec.method : "-"; }
static const char *logu(const struct conn *c) { return c->rec.uri ? c->rec.uri : "-"; }

const char *conn_reason(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Error";
  }
}

/* ---- lifetime ---- */

static void conn_free(struct conn *c) {
  struct worker *w = c->w;
  if (c->rec.method[0] || c->rec.status) stats_request_done(w, &c->rec);
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  w->nconns--;
  stat_set(&w->st->active_connections, w->nconns);
  free(c->rec.uri);
  if (w->nfree < CONN_POOL && c->in_cap == IN_START && (c->out == NULL || c->out_cap == OUT_CAP)) {
    c->next = w->free_conns; /* keep the struct and its buffers for the next connection */
    w->free_conns = c;
    w->nfree++;
  } else {
    free(c->in);
    free(c->out);
    free(c);
  }
  worker_conn_done(w);
}

/* A conn from the worker's pool (buffers kept), or a new one. */
static struct conn *conn_alloc(struct worker *w) {
  struct conn *c = w->free_conns;
  if (c) {
    char *in = c->in, *out = c->out;
    w->free_conns = c->next;
    w->nfree--;
    memset(c, 0, sizeof *c);
    c->in = in;
    c->out = out;
    c->out_cap = out ? OUT_CAP : 0;
  } else {
    c = calloc(1, sizeof *c);
    if (c) c->in = malloc(IN_START);
    if (c && c->in == NULL) {
      free(c);
      c = NULL;
    }
  }
  if (c) c->in_cap = IN_START;
  return c;
}

void conn_pool_free(struct worker *w) {
  while (w->free_conns) {
    struct conn *c = w->free_conns;
    w->free_conns = c->next;
    free(c->in);
    free(c->out);
    free(c);
  }
  w->nfree = 0;
}

static void conn_close(struct conn *c) {
  struct ev_loop *loop = c->w->loop;
  ev_io_stop(loop, &c->io);
  ev_timer_stop(loop, &c->timer);
  ev_timer_stop(loop, &c->budget);
  close(c->fd);
  c->fd = -1;
  conn_free(c);
}

/* ---- waiting ---- */

/* Watches the descriptor for events, with the inactivity timer running. */
static void conn_watch(struct conn *c, int events) {
  struct ev_loop *loop = c->w->loop;
  if (!ev_is_active(&c->io) || (c->io.events & (EV_READ | EV_WRITE)) != events) {
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(loop, &c->io);
  }
  ev_timer_again(loop, &c->timer);
}

static void conn_unwatch(struct conn *c) {
  ev_io_stop(c->w->loop, &c->io);
  ev_timer_stop(c->w->loop, &c->timer);
}

void conn_wait(struct conn *c, int events) {
  c->waiting = 1;
  conn_watch(c, events);
}

void conn_unwait(struct conn *c) {
  if (!c->waiting) return;
  c->waiting = 0;
  conn_unwatch(c);
}

void conn_set_gone(struct conn *c, int err) {
  if (c->gone) return;
  c->gone = 1;
  c->err = err;
}

/* Whether the web server is still there: a reset, or a peer closed both ways (POLLERR, POLLHUP).
   A FIN alone is a half-close, on TCP as on unix sockets (`nc -N` sends its request, shuts its
   side and waits for the answer); a peer that closed for good is seen at the next write. */
int conn_alive(struct conn *c) {
  if (c->gone || c->fd < 0) return 0;
  struct pollfd p = {.fd = c->fd, .events = 0};
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) conn_set_gone(c, EPIPE);
  return !c->gone;
}

/* Arms the budget timer for the phases no request owns: until the deadline, with at least
   FLUSH_MIN to send a response. */
static void conn_arm_budget(struct conn *c, double min) {
  struct ev_loop *loop = c->w->loop;
  ev_timer_stop(loop, &c->budget);
  if (c->deadline <= 0) return;
  double left = c->deadline - clock_now();
  ev_timer_set(&c->budget, left > min ? left : min, 0.);
  ev_timer_start(loop, &c->budget);
}

void conn_set_deadline(struct conn *c, double deadline) {
  c->deadline = deadline;
  conn_arm_budget(c, 0);
}

/* ---- writing ---- */

/* The first bytes of a response: its status for the log, and a warning (counted as an error)
   when they are not a CGI head the web server accepts. */
static void note_head(struct conn *c, const char *p, size_t n) {
  const char *why = NULL;
  if (c->rec.head_checked || c->rec.bytes_out > 0) return;
  if (stats_note_head(&c->w->head_cache, &c->rec, p, n, &why) < 0) {
    slog_at(LOG_WARN,
            "#%llu %s %s: the response does not start with a CGI head (%s): the web server "
            "answers 502",
            (unsigned long long)c->rec.id, logm(c), logu(c), why);
    stat_add(&c->w->st->bad_heads, 1);
    stat_add(&c->w->st->errors, 1);
  }
}

/* Sends p[0..n): bytes sent, 0 when the socket is full, -1 when the peer is gone. */
static ssize_t send_some(struct conn *c, const char *p, size_t n) {
  for (;;) {
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r > 0) {
      c->rec.bytes_out += (uint64_t)r;
      return r;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    conn_set_gone(c, r < 0 ? errno : EPIPE);
    return -1;
  }
}

int conn_flush(struct conn *c) {
  if (c->gone) return CONN_GONE;
  if (c->out_off == 0) note_head(c, c->out, c->out_len);
  while (c->out_off < c->out_len) {
    ssize_t n = send_some(c, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) return CONN_GONE;
    if (n == 0) return CONN_WAIT;
    c->out_off += (size_t)n;
  }
  c->out_off = c->out_len = 0;
  return CONN_DONE;
}

static int ensure_out(struct conn *c) {
  if (c->out) return 0;
  c->out = malloc(OUT_CAP);
  if (c->out == NULL) return -1;
  c->out_cap = OUT_CAP;
  return 0;
}

int conn_write(struct conn *c, const char *s, size_t len, size_t *off) {
  if (c->gone) return CONN_GONE;
  if (ensure_out(c) < 0) {
    conn_set_gone(c, ENOMEM);
    return CONN_GONE;
  }
  while (*off < len) {
    size_t k = len - *off, room = c->out_cap - c->out_len;
    if (c->out_len == 0 && k >= c->out_cap) { /* a large piece: straight out, no copy */
      note_head(c, s + *off, k);
      ssize_t n = send_some(c, s + *off, k);
      if (n < 0) return CONN_GONE;
      if (n == 0) return CONN_WAIT;
      *off += (size_t)n;
      continue;
    }
    if (room == 0) {
      int r = conn_flush(c);
      if (r != CONN_DONE) return r;
      continue;
    }
    if (k > room) k = room;
    memcpy(c->out + c->out_len, s + *off, k);
    c->out_len += k;
    *off += k;
  }
  return CONN_DONE;
}

int conn_sent(const struct conn *c) { return c->rec.bytes_out > 0; }
int conn_wrote(const struct conn *c) { return c->rec.bytes_out > 0 || c->out_len > 0; }

/* ---- reading the body ---- */

int conn_fill(struct conn *c, size_t want) {
  size_t avail = c->in_len - c->in_off;
  if (avail >= want) return CONN_DONE;
  if (c->gone) return CONN_GONE;
  if (c->in_off > 0) {
    memmove(c->in, c->in + c->in_off, avail);
    c->in_len = avail;
    c->in_off = 0;
  }
  /* room for more than asked, so that one recv serves the next reads too */
  uint64_t rest = avail + (c->content_length - c->body_recv);
  size_t fill = want < IN_BODY ? (rest < IN_BODY ? (size_t)rest : IN_BODY) : want;
  if (c->in_cap < fill) {
    size_t cap = want < IN_BODY ? fill : c->in_cap * 2 > want ? c->in_cap * 2 : want;
    char *p = realloc(c->in, cap);
    if (p == NULL) {
      conn_set_gone(c, ENOMEM);
      return CONN_GONE;
    }
    c->in = p;
    c->in_cap = cap;
  }
  for (;;) {
    uint64_t on_socket = c->content_length - c->body_recv;
    size_t room = c->in_cap - c->in_len;
    if (on_socket == 0) return CONN_DONE;
    ssize_t n = recv(c->fd, c->in + c->in_len, room < on_socket ? room : (size_t)on_socket, 0);
    if (n > 0) {
      c->in_len += (size_t)n;
      c->body_recv += (uint64_t)n;
      c->rec.bytes_in += (uint64_t)n;
      if (c->in_len - c->in_off >= want) return CONN_DONE;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return CONN_WAIT;
    conn_set_gone(c, n < 0 ? errno : EPIPE);
    return CONN_GONE;
  }
}

size_t conn_body(const struct conn *c, const char **p) {
  *p = c->in + c->in_off;
  return c->in_len - c->in_off;
}

void conn_consume(struct conn *c, size_t n) {
  c->in_off += n;
  c->body_read += n;
  if (c->in_off == c->in_len && c->in_cap > IN_SHRINK) {
    char *p = realloc(c->in, IN_KEEP);
    if (p) {
      c->in = p;
      c->in_cap = IN_KEEP;
    }
    c->in_off = c->in_len = 0;
  }
}

uint64_t conn_body_left(const struct conn *c) { return c->content_length - c->body_read; }

/* ---- ending ---- */

/* Reads and discards what the peer still sends; closes at EOF. */
static void conn_linger(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->w->scratch, 65536, 0);
    if (n > 0) {
      c->rec.bytes_in += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      conn_watch(c, EV_READ);
      return;
    }
    conn_close(c);
    return;
  }
}

/* The response is out: closing with body bytes unread would make the kernel reset the
   connection (nginx then answers 502), so those are drained first. */
static void conn_done_sending(struct conn *c) {
  if (c->body_recv < c->content_length) {
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    conn_linger(c);
  } else {
    conn_close(c);
  }
}

static void conn_flush_step(struct conn *c) {
  int r = conn_flush(c);
  if (r == CONN_WAIT) {
    conn_watch(c, EV_WRITE);
  } else if (r == CONN_GONE) {
    conn_close(c);
  } else {
    conn_unwatch(c);
    conn_done_sending(c);
  }
}

void conn_end(struct conn *c) {
  c->owner = NULL;
  c->waiting = 0;
  c->state = CONN_FLUSH;
  conn_unwatch(c);
  if (c->gone) {
    if (c->rec.bytes_out == 0 && c->rec.status == 0)
      c->rec.status = 499; /* nginx's "client closed request" */
    conn_close(c);
    return;
  }
  if (c->deadline > 0 &&
      (!ev_is_active(&c->budget) || ev_timer_remaining(c->w->loop, &c->budget) < FLUSH_MIN))
    conn_arm_budget(c, FLUSH_MIN);
  conn_flush_step(c);
}

void conn_cut(struct conn *c) {
  c->out_len = c->out_off = 0;
  conn_end(c);
}

void conn_reply(struct conn *c, int status, const char *why) {
  const char *phrase = conn_reason(status);
  if (why)
    slog_at(status >= 500 ? LOG_ERROR : LOG_WARN, "#%llu %s %s: %d %s: %s",
            (unsigned long long)c->rec.id, logm(c), logu(c), status, phrase, why);
  c->out_len = c->out_off = 0;
  if (!c->gone && ensure_out(c) == 0) {
    int n = snprintf(c->out, c->out_cap, "Status: %d %s\r\nContent-Type: text/plain\r\n\r\n%d %s\n",
                     status, phrase, status, phrase);
    c->out_len = (size_t)n;
    c->rec.status = status;
    c->rec.head_checked = 1;
  }
  conn_end(c);
}

/* ---- the request head ---- */

static void conn_dispatch(struct conn *c, size_t consumed, size_t nh, uint64_t content_length) {
  struct worker *w = c->w;
  uint64_t limit = w->srv->cfg.max_body_size;
  size_t extra = c->in_len - consumed;
  c->content_length = content_length;
  if (extra > content_length) {
    extra = (size_t)content_length; /* bytes past the body are not ours */
    c->in_len = consumed + extra;
  }
  c->in_off = consumed;
  c->body_recv = extra;
  c->state = CONN_OPEN;
  stats_note_request(&c->rec, w->hdrs, nh);
  if (limit && content_length > limit) {
    char why[96];
    snprintf(why, sizeof why, "body of %llu bytes is over the limit of %llu",
             (unsigned long long)content_length, (unsigned long long)limit);
    conn_reply(c, 413, why);
    return;
  }
  if (w->handler->start(c, w->hdrs, nh, c->repeated) < 0)
    conn_reply(c, 500, "cannot start the handler: out of memory");
}

static void conn_read_head(struct conn *c) {
  struct worker *w = c->w;
  size_t limit = w->srv->cfg.max_header_size + 32;
  for (;;) {
    if (c->in_len == c->in_cap) {
      size_t cap = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
      char *p = cap > c->in_cap ? realloc(c->in, cap) : NULL;
      if (p == NULL) {
        c->content_length = UINT64_MAX;
        conn_reply(c, 431, "header block does not fit");
        return;
      }
      c->in = p;
      c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      if (c->in_len > 0)
        slog_at(LOG_WARN, "#%llu connection closed before the header block was complete",
                (unsigned long long)c->rec.id);
      conn_close(c);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      conn_watch(c, EV_READ);
      return;
    }
    c->in_len += (size_t)n;
    c->rec.bytes_in += (uint64_t)n;
    size_t nh = SCGI_MAX_HEADERS;
    uint64_t cl = 0;
    const char *why = NULL;
    int repeated = 0;
    int r = scgi_parse_request(c->in, c->in_len, w->srv->cfg.max_header_size, w->hdrs, &nh, &cl,
                               &repeated, &why);
    if (r == SCGI_PARSE_INCOMPLETE) continue;
    conn_unwatch(c);
    if (r > 0) {
      c->repeated = repeated != 0;
      conn_dispatch(c, (size_t)r, nh, cl);
    } else {
      c->content_length = UINT64_MAX; /* framing unknown: linger until the peer closes */
      c->state = CONN_OPEN;
      conn_reply(c, r == SCGI_PARSE_TOO_LARGE ? 431 : 400, why);
    }
    return;
  }
}

/* ---- events ---- */

static void conn_on_io(struct ev_loop *loop, ev_io *io, int revents) {
  struct conn *c = (struct conn *)io;
  (void)revents;
  switch (c->state) {
  case CONN_HEAD: conn_read_head(c); break;
  case CONN_OPEN:
    if (c->waiting) {
      conn_unwait(c);
      c->w->handler->resume(c);
    } else {
      ev_io_stop(loop, io);
    }
    break;
  case CONN_FLUSH: conn_flush_step(c); break;
  case CONN_LINGER: conn_linger(c); break;
  }
}

static const char *doing(const struct conn *c) {
  switch (c->state) {
  case CONN_HEAD: return "reading the header block";
  case CONN_OPEN: return c->io.events & EV_READ ? "reading the body" : "writing";
  default: return "writing the response";
  }
}

/* --timeout: no progress on the socket. */
static void conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
  (void)revents;
  /* After a long handler run the timer and the socket's readiness come up in the same loop
     iteration, timer first: a socket that is ready made progress in time, so serve it. */
  if (c->fd >= 0 && ev_is_active(&c->io)) {
    struct pollfd p = {.fd = c->fd,
                       .events = (short)((c->io.events & EV_READ ? POLLIN : 0) |
                                         (c->io.events & EV_WRITE ? POLLOUT : 0))};
    if (poll(&p, 1, 0) == 1) {
      ev_timer_again(loop, &c->timer);
      conn_on_io(loop, &c->io, 0);
      return;
    }
  }
  if (c->state != CONN_LINGER)
    slog_at(LOG_WARN, "#%llu %s %s: no progress for %g s while %s; closing",
            (unsigned long long)c->rec.id, logm(c), logu(c), c->w->srv->cfg.timeout, doing(c));
  if (c->state == CONN_OPEN && c->waiting) {
    conn_unwait(c);
    conn_set_gone(c, ETIMEDOUT);
    c->w->handler->resume(c);
    return;
  }
  if (c->state == CONN_OPEN) return; /* the owner ends it */
  conn_close(c);
}

/* --request-timeout: the owner decides; without one, the connection is closed. */
static void conn_on_budget(struct ev_loop *loop, ev_timer *t, int revents) {
  struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, budget));
  (void)loop;
  (void)revents;
  if (c->state == CONN_OPEN && c->owner) {
    c->w->handler->expire(c);
    return;
  }
  slog_at(LOG_ERROR, "#%llu %s %s: request budget of %g s spent while %s; closing",
          (unsigned long long)c->rec.id, logm(c), logu(c), c->deadline - c->rec.start, doing(c));
  conn_close(c);
}

/* ---- accepting ---- */

void conn_accept(struct worker *w, int fd) {
  uint64_t id = atomic_fetch_add(&w->srv->stats->next_id, 1);
  if (w->nconns >= (unsigned)w->srv->cfg.max_connections) {
    refuse_conn(w, fd, id);
    return;
  }
  struct conn *c = conn_alloc(w);
  if (c == NULL) {
    refuse_conn(w, fd, id);
    return;
  }
  c->w = w;
  c->fd = fd;
  c->rec.id = id;
  c->rec.start = clock_now();
  c->state = CONN_HEAD;
  ev_io_init(&c->io, conn_on_io, fd, EV_READ);
  ev_init(&c->timer, conn_on_timer);
  c->timer.repeat = w->srv->cfg.timeout;
  c->deadline = c->rec.start + w->srv->cfg.request_timeout;
  ev_init(&c->budget, conn_on_budget);
  conn_arm_budget(c, 0);
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  w->nconns++;
  stat_add(&w->st->connections, 1);
  stat_set(&w->st->active_connections, w->nconns);
  conn_read_head(c);
}

/* The worker is going away: what is buffered gets one try, what the peer sent is drained (so the
   answer is not lost to a reset), and every connection is closed. */
void conn_close_all(struct worker *w) {
  while (w->conns) {
    struct conn *c = w->conns;
    if (c->state == CONN_FLUSH && !c->gone) conn_flush(c);
    if (c->state != CONN_HEAD) sock_drain(c->fd, w->scratch);
    conn_close(c);
  }
  refuse_close_all(w);
}
