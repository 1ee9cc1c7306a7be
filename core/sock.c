/* sock.c: outbound stream sockets: every system call on them, their waits and timeouts. */
#include "sock.h"
#include "tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define RECV_CHUNK 16384

static void on_io(struct ev_loop *loop, ev_io *io, int revents) {
  struct sock *s = (struct sock *)io;
  (void)loop;
  (void)revents;
  sock_unwait(s);
  s->ready(s);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  struct sock *s = (struct sock *)((char *)t - offsetof(struct sock, timer));
  (void)loop;
  (void)revents;
  sock_unwait(s);
  s->timed_out = 1;
  s->ready(s);
}

void sock_init(struct sock *s, void (*ready)(struct sock *s), void *owner) {
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->timeout = -1;
  s->ready = ready;
  s->owner = owner;
  ev_io_init(&s->io, on_io, 0, EV_WRITE);
  ev_init(&s->timer, on_timer);
}

const char *sock_error(const struct sock *s) {
  int e = s->err;
  if (e == EPROTO && s->tls_error[0]) return s->tls_error;
  return e == EPIPE || e == ECONNRESET || e == 0 ? "closed"
         : e == ECONNREFUSED                     ? "connection refused"
         : e == ETIMEDOUT                        ? "timeout"
                                                 : strerror(e);
}

int sock_dirty(const struct sock *s) { return s->len > s->off || tls_pending(s) > 0; }

void sock_adopt(struct sock *s, int fd, void *ssl) {
  s->fd = fd;
  s->ssl = ssl;
}

void sock_release(struct sock *s, int *fd, void **ssl) {
  sock_unwait(s);
  *fd = s->fd;
  *ssl = s->ssl;
  s->fd = -1;
  s->ssl = NULL;
  sock_close(s);
}

static int gone(struct sock *s, int err) {
  s->err = err;
  return SOCK_GONE;
}

int sock_connect(struct sock *s, const struct sockaddr *sa, socklen_t len) {
  s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0) return gone(s, errno);
  if (sa->sa_family != AF_UNIX) { /* requests and answers: no waiting for ACKs of small writes */
    int on = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
  if (connect(s->fd, sa, len) == 0) return SOCK_DONE;
  if (errno == EINPROGRESS) return SOCK_WAIT;
  int e = errno == EAGAIN ? ECONNREFUSED : errno; /* a full unix listener */
  close(s->fd);
  s->fd = -1;
  return gone(s, e);
}

int sock_connected(struct sock *s) {
  int err = 0;
  socklen_t len = sizeof err;
  if (s->timed_out)
    err = ETIMEDOUT;
  else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
    err = errno;
  if (err == 0) return SOCK_DONE;
  close(s->fd);
  s->fd = -1;
  return gone(s, err);
}

int sock_send(struct sock *s, const char *p, size_t n, size_t *sent) {
  while (s->ssl && *sent < n) {
    size_t k = 0;
    int rc = tls_write(s, p + *sent, n - *sent, &k);
    if (rc != SOCK_DONE) return rc;
    *sent += k;
    s->bytes_out += k;
  }
  while (*sent < n) {
    ssize_t r = send(s->fd, p + *sent, n - *sent, MSG_NOSIGNAL);
    if (r > 0) {
      *sent += (size_t)r;
      s->bytes_out += (unsigned long long)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return SOCK_WAIT;
    return gone(s, r < 0 ? errno : EPIPE);
  }
  return SOCK_DONE;
}

static int make_room(struct sock *s) {
  if (s->off > 0 && s->off == s->len) s->off = s->len = 0;
  if (s->cap - s->len >= RECV_CHUNK) return 0;
  if (s->off > 0) {
    memmove(s->buf, s->buf + s->off, s->len - s->off);
    s->len -= s->off;
    s->off = 0;
  }
  if (s->cap - s->len >= RECV_CHUNK) return 0;
  size_t cap = s->cap ? s->cap * 2 : RECV_CHUNK * 2;
  char *p = realloc(s->buf, cap);
  if (p == NULL) return -1;
  s->buf = p;
  s->cap = cap;
  return 0;
}

int sock_fill(struct sock *s) {
  if (make_room(s) < 0) return gone(s, ENOMEM);
  if (s->ssl) {
    size_t n = 0;
    int rc = tls_read(s, s->buf + s->len, s->cap - s->len, &n);
    s->len += n;
    s->bytes_in += n;
    return rc;
  }
  for (;;) {
    ssize_t n = recv(s->fd, s->buf + s->len, s->cap - s->len, 0);
    if (n > 0) {
      s->len += (size_t)n;
      s->bytes_in += (unsigned long long)n;
      return SOCK_DONE;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return SOCK_WAIT;
    return gone(s, n < 0 ? errno : 0);
  }
}

void sock_take(struct sock *s, size_t n) {
  s->off += n;
  if (s->off == s->len) s->off = s->len = 0;
}

void sock_wait(struct sock *s, struct ev_loop *loop, int events) {
  s->loop = loop;
  s->timed_out = 0;
  ev_io_set(&s->io, s->fd, events);
  ev_io_start(loop, &s->io);
  if (s->timeout >= 0) {
    ev_now_update(loop); /* the handler may have run for a while since the loop woke */
    ev_timer_set(&s->timer, s->timeout, 0.);
    ev_timer_start(loop, &s->timer);
  }
}

void sock_wait_timer(struct sock *s, struct ev_loop *loop, double timeout) {
  s->loop = loop;
  s->timed_out = 0;
  if (timeout < 0) return;
  ev_now_update(loop);
  ev_timer_set(&s->timer, timeout, 0.);
  ev_timer_start(loop, &s->timer);
}

void sock_unwait(struct sock *s) {
  if (s->loop == NULL) return;
  ev_io_stop(s->loop, &s->io);
  ev_timer_stop(s->loop, &s->timer);
}

void sock_close(struct sock *s) {
  sock_unwait(s);
  tls_close(s);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  free(s->buf);
  s->buf = NULL;
  s->cap = s->len = s->off = 0;
}

int sock_set_option(struct sock *s, const char *name, int on) {
  if (strcmp(name, "keepalive") == 0)
    return setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  if (strcmp(name, "tcp-nodelay") == 0)
    return setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return -1;
}

int sock_shutdown(struct sock *s, const char *how) {
  return shutdown(s->fd, strcmp(how, "send") == 0      ? SHUT_WR
                         : strcmp(how, "receive") == 0 ? SHUT_RD
                                                       : SHUT_RDWR);
}

int sock_peer(const struct sock *s, struct sockaddr_storage *ss, socklen_t *len) {
  *len = sizeof *ss;
  return getpeername(s->fd, (struct sockaddr *)ss, len) < 0 ? -1 : 0;
}

int sock_unix_addr(const char *path, struct sockaddr_storage *ss, socklen_t *len) {
  struct sockaddr_un *su = (struct sockaddr_un *)ss;
  if (strlen(path) >= sizeof su->sun_path) return -1;
  memset(ss, 0, sizeof *ss);
  su->sun_family = AF_UNIX;
  strcpy(su->sun_path, path);
  *len = sizeof *su;
  return 0;
}
