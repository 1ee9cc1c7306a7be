/* conn.c: one connection's state machine: read the header block, run the handler, flush, drain,
   close. Every socket call is non-blocking; waiting is done by the worker's loop. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"

#define IN_START 4096
#define OUT_CAP (64 * 1024)
#define CONN_POOL 256 /* idle conns a worker keeps, with their buffers */

static const char *reason_phrase(int status) {
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

static void conn_free(struct conn *c) {
  struct worker *w = c->w;
  if (c->method[0] || c->status) stats_request_done(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  w->nconns--;
  stat_set(&w->st.active, w->nconns);
  free(c->uri);
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

/* Frees the pool (the worker is going away). */
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

/* Stops watching, closes the descriptor; frees the conn unless a coroutine still holds it. */
static void conn_gone(struct conn *c, int err);

/* A coroutine still running after the close (the handler closed the client and went on, e.g.
   into scgi.sleep) keeps its own wait and its budget: it is freed when it ends or is stopped. */
void conn_close(struct conn *c) {
  struct ev_loop *loop = c->w->loop;
  if (c->state != CONN_CLOSED) {
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    if (c->wait == WAIT_READ || c->wait == WAIT_WRITE) { /* parked on this socket: wake it */
      conn_gone(c, EPIPE);
      conn_resume_later(c);
    }
  }
  if (c->co == NULL) {
    ev_timer_stop(loop, &c->budget);
    ev_timer_stop(loop, &c->wake);
    conn_free(c);
  }
}

/* Waits for the descriptor to become readable or writable, with the inactivity timer running. */
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

void conn_park(struct conn *c, enum conn_wait wait) {
  c->wait = wait;
  conn_watch(c, wait == WAIT_READ ? EV_READ : EV_WRITE);
}

static void conn_gone(struct conn *c, int err) {
  c->peer_gone = 1;
  c->err = err;
}

int conn_flush(struct conn *c) {
  if (c->bytes_out == 0 && c->out_off == 0) stats_note_status(c, c->out, c->out_len);
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
      c->bytes_out += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    conn_gone(c, n < 0 ? errno : EPIPE);
    return -1;
  }
  c->out_off = c->out_len = 0;
  return 0;
}

int conn_fill(struct conn *c, size_t want) {
  size_t avail = c->in_len - c->in_off;
  if (avail >= want) return 0;
  if (c->peer_gone) return -1;
  if (c->in_off > 0) {
    memmove(c->in, c->in + c->in_off, avail);
    c->in_len = avail;
    c->in_off = 0;
  }
  if (c->in_cap < want) {
    size_t cap = c->in_cap * 2 > want ? c->in_cap * 2 : want;
    char *p = realloc(c->in, cap);
    if (p == NULL) {
      conn_gone(c, ENOMEM);
      return -1;
    }
    c->in = p;
    c->in_cap = cap;
  }
  for (;;) {
    uint64_t on_socket = c->content_length - c->body_recv;
    size_t room = c->in_cap - c->in_len;
    if (on_socket == 0) return 0;
    ssize_t n = recv(c->fd, c->in + c->in_len, room < on_socket ? room : (size_t)on_socket, 0);
    if (n > 0) {
      c->in_len += (size_t)n;
      c->body_recv += (uint64_t)n;
      c->bytes_in += (uint64_t)n;
      if (c->in_len - c->in_off >= want) return 0;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    conn_gone(c, n < 0 ? errno : EPIPE);
    return -1;
  }
}

/* Reads and discards what the peer still sends; closes at EOF. */
static void conn_linger(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->w->scratch, 65536, 0);
    if (n > 0) {
      c->bytes_in += (uint64_t)n;
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

/* Called when the response is fully written. */
static void conn_sent(struct conn *c) {
  if (c->body_recv < c->content_length) {
    /* unread body: closing now would make the kernel reset the connection */
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    conn_linger(c);
  } else {
    conn_close(c);
  }
}

static void conn_flush_step(struct conn *c) {
  int r = conn_flush(c);
  if (r == 1) {
    conn_watch(c, EV_WRITE);
  } else if (r < 0) {
    conn_close(c);
  } else {
    conn_unwatch(c);
    conn_sent(c);
  }
}

/* The handler is done with the connection: send what is buffered, then close. */
void conn_finish(struct conn *c) {
  if (c->state != CONN_RUN) return;
  c->state = CONN_FLUSH;
  c->wait = WAIT_NONE;
  if (c->peer_gone) {
    if (c->bytes_out == 0) c->status = 499; /* nginx's "client closed request" */
    conn_close(c);
    return;
  }
  conn_flush_step(c);
}

void conn_respond_error(struct conn *c, int status, const char *why) {
  const char *phrase = reason_phrase(status);
  if (c->peer_gone) { /* nobody to answer: the web server went away */
    c->status = c->status ? c->status : 499;
    conn_close(c);
    return;
  }
  if (why)
    slog_at(status >= 500 ? LOG_ERROR : LOG_WARN, "#%llu %s %s: %d %s: %s",
            (unsigned long long)c->id, c->method[0] ? c->method : "-", c->uri ? c->uri : "-",
            status, phrase, why);
  if (c->out == NULL) {
    c->out = malloc(OUT_CAP);
    c->out_cap = c->out ? OUT_CAP : 0;
  }
  if (c->out == NULL) {
    conn_close(c);
    return;
  }
  c->status = status;
  int n = snprintf(c->out, c->out_cap, "Status: %d %s\r\nContent-Type: text/plain\r\n\r\n%d %s\n",
                   status, phrase, status, phrase);
  c->out_len = (size_t)n;
  c->out_off = 0;
  c->state = CONN_RUN;
  conn_finish(c);
}

/* Keeps the method and URI for the log lines. */
static void set_request_line(struct conn *c, const struct scgi_header *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (h[i].name_len == 14 && memcmp(h[i].name, "REQUEST_METHOD", 14) == 0) {
      size_t n_m = h[i].value_len < sizeof c->method - 1 ? h[i].value_len : sizeof c->method - 1;
      memcpy(c->method, h[i].value, n_m);
      c->method[n_m] = '\0';
    } else if (h[i].name_len == 11 && memcmp(h[i].name, "REQUEST_URI", 11) == 0 && c->uri == NULL)
      c->uri = strdup(h[i].value);
  }
}

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
  c->state = CONN_RUN;
  set_request_line(c, w->hdrs, nh);
  if (limit && content_length > limit) {
    char why[96];
    snprintf(why, sizeof why, "body of %llu bytes is over the limit of %llu",
             (unsigned long long)content_length, (unsigned long long)limit);
    conn_respond_error(c, 413, why);
    return;
  }
  if (lstate_start(c, w->hdrs, nh) < 0) conn_respond_error(c, 500, "cannot start the handler");
}

static void conn_read_head(struct conn *c) {
  struct worker *w = c->w;
  size_t limit = w->srv->cfg.max_header_size + 32;
  for (;;) {
    if (c->in_len == c->in_cap) {
      size_t cap = c->in_cap * 2 < limit ? c->in_cap * 2 : limit;
      char *p = cap > c->in_cap ? realloc(c->in, cap) : NULL;
      if (p == NULL) {
        conn_respond_error(c, 431, "header block does not fit");
        return;
      }
      c->in = p;
      c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      if (c->in_len > 0)
        slog_at(LOG_WARN, "#%llu connection closed before the header block was complete",
                (unsigned long long)c->id);
      conn_close(c);
      return;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      conn_watch(c, EV_READ);
      return;
    }
    c->in_len += (size_t)n;
    c->bytes_in += (uint64_t)n;
    size_t nh = SCGI_MAX_HEADERS;
    uint64_t cl = 0;
    const char *why = NULL;
    int r =
        scgi_parse_request(c->in, c->in_len, w->srv->cfg.max_header_size, w->hdrs, &nh, &cl, &why);
    if (r == SCGI_PARSE_INCOMPLETE) continue;
    conn_unwatch(c);
    if (r > 0) {
      conn_dispatch(c, (size_t)r, nh, cl);
    } else {
      c->content_length = UINT64_MAX; /* framing unknown: linger until the peer closes */
      c->state = CONN_RUN;
      conn_respond_error(c, r == SCGI_PARSE_TOO_LARGE ? 431 : 400, why);
    }
    return;
  }
}

void conn_on_io(struct ev_loop *loop, ev_io *io, int revents) {
  struct conn *c = (struct conn *)io;
  (void)loop;
  (void)revents;
  switch (c->state) {
  case CONN_HEAD: conn_read_head(c); break;
  case CONN_RUN:
    if (c->wait != WAIT_NONE) {
      conn_unwatch(c);
      c->wait = WAIT_NONE;
      lstate_run(c, 0);
    } else {
      ev_io_stop(loop, io);
    }
    break;
  case CONN_FLUSH: conn_flush_step(c); break;
  case CONN_LINGER: conn_linger(c); break;
  case CONN_CLOSED: ev_io_stop(loop, io); break;
  }
}

void conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents) {
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
            (unsigned long long)c->id, c->method[0] ? c->method : "-", c->uri ? c->uri : "-",
            c->w->srv->cfg.timeout,
            c->state == CONN_HEAD  ? "reading the header block"
            : c->state == CONN_RUN ? (c->wait == WAIT_READ ? "reading the body" : "writing")
                                   : "writing the response");
  if (c->state == CONN_RUN && c->wait != WAIT_NONE) {
    conn_unwatch(c);
    c->wait = WAIT_NONE;
    c->timed_out = 1;
    conn_gone(c, ETIMEDOUT);
    lstate_run(c, 0);
    return;
  }
  conn_close(c);
}

/* Stops whatever the parked coroutine waits for. */
static void conn_cancel_wait(struct conn *c) {
  if (c->wait == WAIT_READ || c->wait == WAIT_WRITE) conn_unwatch(c);
  if (c->wait == WAIT_TIMER) ev_timer_stop(c->w->loop, &c->wake);
  if (c->wait == WAIT_OTHER && c->cancel) c->cancel(c->cancel_arg);
  c->cancel = NULL;
  c->wait = WAIT_NONE;
}

/* The budget the request had, in seconds (for the log). */
double conn_budget(const struct conn *c) { return c->deadline - c->start; }

/* client:budget(seconds): the request may run that long from now; 0 lifts the limit. */
void conn_set_budget(struct conn *c, double seconds) {
  struct ev_loop *loop = c->w->loop;
  ev_timer_stop(loop, &c->budget);
  if (seconds <= 0) {
    c->deadline = 0;
    return;
  }
  ev_now_update(loop);
  c->deadline = lstate_now() + seconds;
  ev_timer_set(&c->budget, seconds, 0.);
  ev_timer_start(loop, &c->budget);
}

/* --request-timeout: the request's time is up; 504 if nothing was sent, else cut short. */
static void conn_on_budget(struct ev_loop *loop, ev_timer *t, int revents) {
  struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, budget));
  (void)loop;
  (void)revents;
  slog_at(LOG_ERROR, "#%llu %s %s: request budget of %g s spent%s", (unsigned long long)c->id,
          c->method[0] ? c->method : "-", c->uri ? c->uri : "-", conn_budget(c),
          c->co ? "; the handler is stopped" : "");
  if (c->co) {
    conn_cancel_wait(c);
    lstate_abort(c);
    c->w->errors++;
    if (c->state == CONN_RUN && c->bytes_out == 0 && !c->peer_gone) {
      c->out_len = c->out_off = 0;
      conn_respond_error(c, 504, NULL);
      return;
    }
  }
  conn_close(c);
}

/* scgi.sleep's timer: resume the request. */
static void conn_on_wake(struct ev_loop *loop, ev_timer *t, int revents) {
  struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, wake));
  (void)loop;
  (void)revents;
  if (c->wait != WAIT_TIMER || c->co == NULL) return;
  c->wait = WAIT_NONE;
  if (c->state == CONN_RUN) conn_peer_alive(c); /* so the next write knows the peer left */
  lstate_run(c, 0);
}

/* Whether the web server is still there: a unix socket peer that closed shows as POLLHUP; over
   TCP a FIN shows only as POLLRDHUP, and SCGI clients never half-close, so it counts too. */
int conn_peer_alive(struct conn *c) {
  if (c->peer_gone || c->fd < 0) return 0;
  struct pollfd p = {.fd = c->fd, .events = POLLRDHUP};
  short gone = POLLHUP | POLLERR | (c->w->srv->lst.is_unix ? 0 : POLLRDHUP);
  if (poll(&p, 1, 0) == 1 && (p.revents & gone)) conn_gone(c, EPIPE);
  return !c->peer_gone;
}

/* Resumes a request on the next loop iteration (not from inside another request). */
void conn_resume_later(struct conn *c) {
  c->cancel = NULL;
  c->wait = WAIT_TIMER;
  ev_timer_set(&c->wake, 0., 0.);
  ev_timer_start(c->w->loop, &c->wake);
}

void conn_sleep(struct conn *c, double seconds) {
  c->wait = WAIT_TIMER;
  ev_now_update(c->w->loop); /* the handler may have run for a while since the loop woke */
  ev_timer_set(&c->wake, seconds, 0.);
  ev_timer_start(c->w->loop, &c->wake);
}

/* Resumes a request parked on something else than its own socket (WAIT_OTHER). */
void conn_resume(struct conn *c) {
  if (c->wait != WAIT_OTHER || c->co == NULL) return;
  c->wait = WAIT_NONE;
  c->cancel = NULL;
  if (c->state == CONN_RUN) conn_peer_alive(c);
  lstate_run(c, 0);
}

void conn_start(struct worker *w, int fd) {
  struct conn *c = conn_alloc(w);
  if (c == NULL) {
    close(fd);
    return;
  }
  c->w = w;
  c->fd = fd;
  c->id = atomic_fetch_add(&w->srv->next_id, 1);
  c->start = lstate_now();
  c->co_ref = c->client_ref = LUA_NOREF;
  ev_io_init(&c->io, conn_on_io, fd, EV_READ);
  ev_init(&c->timer, conn_on_timer);
  c->timer.repeat = w->srv->cfg.timeout;
  ev_init(&c->wake, conn_on_wake);
  c->deadline = c->start + w->srv->cfg.request_timeout;
  ev_timer_init(&c->budget, conn_on_budget, w->srv->cfg.request_timeout, 0.);
  ev_timer_start(w->loop, &c->budget);
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  w->nconns++;
  stat_add(&w->st.connections, 1);
  stat_set(&w->st.active, w->nconns);
  if (w->nconns > (unsigned)w->srv->cfg.max_connections) {
    c->state = CONN_RUN;
    c->content_length = UINT64_MAX;
    if (w->nconns > 2 * (unsigned)w->srv->cfg.max_connections)
      conn_close(c);
    else
      conn_respond_error(c, 503, "over --max-connections");
    return;
  }
  conn_read_head(c);
}

/* Closes every connection (the worker is going away); coroutines are dropped with the state. */
void conn_free_all(struct worker *w) {
  while (w->conns) {
    struct conn *c = w->conns;
    if (c->co) {
      conn_cancel_wait(c);
      lstate_abort(c);
    }
    conn_close(c);
  }
}
