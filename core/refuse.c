/* refuse.c: connections over --max-connections get a 503 at once (it fits any socket buffer)
   and their request is drained, so the web server reads the answer rather than a reset. A
   reserve of them linger until the peer closes; past it, the drain is one read. */
#include "refuse.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "server.h"
#include "stats.h"
#include "worker.h"

#define REFUSAL_RESERVE 64 /* refused connections a worker answers and drains at once */
#define REFUSAL_LINGER 2.0 /* seconds a refused connection may take to close */

struct refusal {
  ev_io io; /* first member */
  ev_timer timer;
  struct worker *w;
  struct refusal *prev, *next;
};

static const char refused_answer[] = "Status: 503 Service Unavailable\r\nContent-Type: text/plain"
                                     "\r\n\r\n503 Service Unavailable\n";

static void refusal_close(struct refusal *f) {
  struct worker *w = f->w;
  ev_io_stop(w->loop, &f->io);
  ev_timer_stop(w->loop, &f->timer);
  close(f->io.fd);
  if (f->prev)
    f->prev->next = f->next;
  else
    w->refusals = f->next;
  if (f->next) f->next->prev = f->prev;
  w->nrefusals--;
  free(f);
}

int sock_drain(int fd, char *scratch) {
  for (;;) {
    ssize_t n = recv(fd, scratch, 65536, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }
}

static void on_refusal_io(struct ev_loop *loop, ev_io *io, int revents) {
  struct refusal *f = (struct refusal *)io;
  (void)loop;
  (void)revents;
  if (sock_drain(io->fd, f->w->scratch)) refusal_close(f);
}

static void on_refusal_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  (void)loop;
  (void)revents;
  refusal_close((struct refusal *)((char *)t - offsetof(struct refusal, timer)));
}

/* Answers 503 at once (the answer fits any socket buffer) and drains the request, so the web
   server reads the answer rather than a reset. Past the reserve, the drain is one read. */
void refuse_conn(struct worker *w, int fd, uint64_t id) {
  struct request_record rec = {.id = id, .status = 503, .start = clock_now()};
  slog_at(LOG_ERROR, "#%llu - -: 503 Service Unavailable: over --max-connections (%d)",
          (unsigned long long)id, w->srv->cfg.max_connections);
  ssize_t n = send(fd, refused_answer, sizeof refused_answer - 1, MSG_NOSIGNAL);
  rec.bytes_out = n > 0 ? (uint64_t)n : 0;
  stat_add(&w->st->refused, 1);
  stats_request_done(w, &rec);
  shutdown(fd, SHUT_WR);
  struct refusal *f = w->nrefusals < REFUSAL_RESERVE ? calloc(1, sizeof *f) : NULL;
  if (sock_drain(fd, w->scratch) || f == NULL) {
    free(f);
    close(fd);
    return;
  }
  f->w = w;
  f->next = w->refusals;
  if (w->refusals) w->refusals->prev = f;
  w->refusals = f;
  w->nrefusals++;
  ev_io_init(&f->io, on_refusal_io, fd, EV_READ);
  ev_io_start(w->loop, &f->io);
  ev_timer_init(&f->timer, on_refusal_timer, REFUSAL_LINGER, 0.);
  ev_timer_start(w->loop, &f->timer);
}

void refuse_close_all(struct worker *w) {
  while (w->refusals)
    refusal_close(w->refusals);
}
