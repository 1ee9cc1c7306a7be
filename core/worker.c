/* worker.c: one worker thread: its loop, accepting, reloading and stopping. The Lua side is
   reached through rt.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "rt.h"
#include "server.h"
#include "worker.h"

#define ACCEPT_BATCH 64

/* Out of descriptors: stop watching the listener for a while rather than spin on it. Logged once
   per episode: an episode ends when the worker has caught up with every queued client. */
static void accept_pause(struct worker *w, int err) {
  if (!w->emfile_logged)
    slog_at(LOG_ERROR, "worker %d: cannot accept: %s; pausing until descriptors free up", w->id,
            strerror(err));
  w->emfile_logged = 1;
  ev_io_stop(w->loop, &w->accept_w);
  ev_timer_set(&w->accept_retry, 0.1, 0.);
  ev_timer_start(w->loop, &w->accept_retry);
}

/* Accepts what is queued on the listener, up to a batch so the loop stays fair. */
static void accept_some(struct worker *w) {
  int lfd = atomic_load(&w->srv->listen_fd);
  ev_now_update(w->loop); /* budgets start now, even after a long handler run */
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      conn_accept(w, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (i == 0) w->spurious++;
      w->emfile_logged = 0; /* caught up: an overload that comes back is logged again */
      return;
    }
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      accept_pause(w, errno);
      return;
    }
    slog_at(LOG_ERROR, "worker %d: accept: %s", w->id, strerror(errno));
    return;
  }
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents) {
  (void)loop;
  (void)revents;
  accept_some((struct worker *)((char *)io - offsetof(struct worker, accept_w)));
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents) {
  struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, accept_retry));
  (void)revents;
  if (atomic_load(&w->stop)) return;
  ev_io_start(loop, &w->accept_w);
  accept_some(w);
}

void worker_conn_done(struct worker *w) {
  if (atomic_load(&w->stop) && w->nconns == 0 && rt_live(w) == 0) ev_break(w->loop, EVBREAK_ALL);
}

static void on_wake(struct ev_loop *loop, ev_async *a, int revents) {
  struct worker *w = (struct worker *)((char *)a - offsetof(struct worker, wake));
  (void)revents;
  int stop = atomic_load(&w->stop);
  if (atomic_exchange(&w->reload, 0) && stop == 0) rt_reload(w);
  if (stop >= 2) {
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  if (stop == 1 && w->accepting) {
    struct server *s = w->srv;
    accept_some(w); /* serve what is already queued */
    ev_io_stop(loop, &w->accept_w);
    ev_timer_stop(loop, &w->accept_retry);
    w->accepting = 0;
    /* the last worker to stop accepting closes the listener: new clients are refused at once */
    if (atomic_fetch_add(&s->stopped_accepting, 1) + 1 == s->nworkers) {
      int fd = atomic_exchange(&s->listen_fd, -1);
      if (fd >= 0) close(fd);
    }
    worker_conn_done(w);
  }
}

/* Waits for clients by watching the shared listener (--accept shared, the default). "exclusive"
   puts the listener in a private epoll set with EPOLLEXCLUSIVE and watches that set; measured in
   docs/accept.md, it still wakes every idle worker (the kernel only stops at an exclusive entry
   when a thread sleeps on that very set), so it stays an option for measurement only. */
static int worker_listen(struct worker *w) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE};
  const char *mode = w->srv->cfg.accept;
  int fd = w->srv->listen_fd;
  if (mode && strcmp(mode, "exclusive") == 0) {
    w->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep_fd < 0 || epoll_ctl(w->ep_fd, EPOLL_CTL_ADD, fd, &ev) < 0) return -1;
    fd = w->ep_fd;
  }
  ev_io_init(&w->accept_w, on_accept, fd, EV_READ);
  ev_io_start(w->loop, &w->accept_w);
  ev_init(&w->accept_retry, on_accept_retry);
  w->accepting = 1;
  return 0;
}

/* Prepares what the main thread may touch before the thread starts: the loop and its wake-up. */
int worker_init(struct worker *w, struct server *s, int id) {
  memset(w, 0, sizeof *w);
  w->srv = s;
  w->id = id;
  w->ep_fd = -1;
  w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
  if (w->loop == NULL) return -1;
  ev_async_init(&w->wake, on_wake);
  ev_async_start(w->loop, &w->wake);
  return 0;
}

int worker_setup(struct worker *w) {
  w->handler = &rt_conn_handler;
  w->hdrs = malloc(SCGI_MAX_HEADERS * sizeof *w->hdrs);
  w->scratch = malloc(65536);
  if (w->hdrs == NULL || w->scratch == NULL) {
    snprintf(w->load_error, sizeof w->load_error, "worker %d: out of memory", w->id);
    return -1;
  }
  return rt_open(w, w->load_error, sizeof w->load_error);
}

void worker_teardown(struct worker *w) {
  rt_abandon(w);
  conn_close_all(w);
  conn_pool_free(w);
  rt_close(w);
  if (w->ep_fd >= 0) close(w->ep_fd);
  w->ep_fd = -1;
  free(w->hdrs);
  free(w->scratch);
  w->hdrs = NULL;
  w->scratch = NULL;
}

/* Builds the runtime, reports to the main thread, waits for the listener, serves. */
void *worker_main(void *arg) {
  struct worker *w = arg;
  struct server *s = w->srv;
  log_attach(s->log);
  int ok = worker_setup(w) == 0;
  pthread_mutex_lock(&s->mu);
  if (ok)
    s->ready++;
  else
    s->failed++;
  pthread_cond_broadcast(&s->cv);
  while (s->go == 0)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  if (ok && s->go == 1) {
    if (worker_listen(w) < 0)
      slog_at(LOG_ERROR, "worker %d: cannot watch the listener: %s", w->id, strerror(errno));
    else
      ev_run(w->loop, 0);
  }
  if (ok && s->go == 1)
    slog_at(LOG_INFO, "worker %d: served %llu requests (%llu errors, %llu empty wake-ups)", w->id,
            (unsigned long long)stat_get(&w->st.requests),
            (unsigned long long)stat_get(&w->st.errors), (unsigned long long)w->spurious);
  worker_teardown(w);
  atomic_fetch_sub(&s->running, 1);
  ev_async_send(s->loop, &s->done);
  return NULL;
}
