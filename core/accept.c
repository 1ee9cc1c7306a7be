/* accept.c: how clients reach the workers. handoff (the default): the main thread watches the
   listener, accepts, and hands each client to the least busy worker through a queue of its own
   and an ev_async, so one client wakes one worker, whatever the number of workers, and a worker
   busy in Lua gets no new client while another is idle. shared: every worker watches the listener
   (every idle worker wakes for each client). Measurements: docs/accept.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accept.h"
#include "conn.h"
#include "log.h"
#include "rt.h"
#include "server.h"
#include "worker.h"

#define ACCEPT_BATCH 64
#define BUSY_NS 1000000ull /* a worker in one Lua resume this long counts as busy */

/* ---- the queue a worker takes its clients from (one producer: the acceptor) ---- */

static int queue_push(struct worker *w, int fd) {
  unsigned head = atomic_load_explicit(&w->q_head, memory_order_relaxed);
  unsigned tail = atomic_load_explicit(&w->q_tail, memory_order_acquire);
  if (head - tail == ACCEPT_QUEUE) return -1;
  w->queue[head % ACCEPT_QUEUE] = fd;
  atomic_store_explicit(&w->q_head, head + 1, memory_order_release);
  return 0;
}

static int queue_pop(struct worker *w) {
  unsigned tail = atomic_load_explicit(&w->q_tail, memory_order_relaxed);
  if (tail == atomic_load_explicit(&w->q_head, memory_order_acquire)) return -1;
  int fd = w->queue[tail % ACCEPT_QUEUE];
  atomic_store_explicit(&w->q_tail, tail + 1, memory_order_release);
  return fd;
}

static unsigned queued(struct worker *w) {
  return atomic_load_explicit(&w->q_head, memory_order_relaxed) -
         atomic_load_explicit(&w->q_tail, memory_order_relaxed);
}

/* The worker takes the clients handed to it. */
void accept_take(struct worker *w) {
  int fd;
  ev_now_update(w->loop); /* budgets start now, even after a long handler run */
  while ((fd = queue_pop(w)) >= 0)
    conn_accept(w, fd);
}

static void on_handoff(struct ev_loop *loop, ev_async *a, int revents) {
  (void)loop;
  (void)revents;
  accept_take((struct worker *)((char *)a - offsetof(struct worker, handoff)));
}

/* ---- accepting ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The worker for the next client: not in a long Lua resume, then the fewest clients handed but
   not yet taken; workers past the number of CPUs count as EXTRA_PENALTY more, and ties go to the
   lowest-numbered worker. So at moderate load the clients stay on as many workers as there are
   cores (each wake-up of a sleeping worker costs a context switch; more awake workers than cores
   cannot run anyway), and the others are woken only when those have a backlog or run Lua.
   Parked connections are not counted: they cost no CPU until they wake; a worker at
   --max-connections comes after every other. Measured in docs/accept.md. */
#define EXTRA_PENALTY 2
static struct worker *least_busy(struct server *s, uint64_t now) {
  struct worker *best = NULL;
  uint64_t best_load = UINT64_MAX, full = (uint64_t)s->cfg.max_connections;
  for (int k = 0; k < s->nworkers; k++) {
    struct worker *w = &s->workers[k];
    uint64_t load = queued(w) + (k >= s->ncpu ? EXTRA_PENALTY : 0);
    if (rt_busy_since(w, now) >= BUSY_NS) load += 1u << 20;
    if (stat_get(&w->st->active_connections) + queued(w) >= full) load += 1u << 21;
    if (load < best_load) {
      best = w;
      best_load = load;
    }
  }
  return best;
}

/* Out of descriptors: stop watching the listener for a while rather than spin on it. Logged once
   per episode: an episode ends when everything queued was accepted. */
static void pause_accepting(struct ev_loop *loop, ev_io *io, ev_timer *retry, int *logged,
                            const char *who, int err) {
  if (!*logged)
    slog_at(LOG_ERROR, "%s: cannot accept: %s; pausing until descriptors free up", who,
            strerror(err));
  *logged = 1;
  ev_io_stop(loop, io);
  ev_timer_set(retry, 0.1, 0.);
  ev_timer_start(loop, retry);
}

/* Accepts up to a batch; gives each client to give(fd, arg). Returns how many were accepted, or
   -1 after pausing. */
static int accept_batch(int lfd, void (*give)(int fd, void *arg), void *arg, int *err) {
  for (int i = 0; i < ACCEPT_BATCH; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      give(fd, arg);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    *err = errno;
    return i;
  }
  *err = 0;
  return ACCEPT_BATCH;
}

static int out_of_descriptors(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

/* handoff: the acceptor (the main thread). */
static void give_to_least_busy(int fd, void *arg) {
  struct server *s = arg;
  uint64_t now = now_ns();
  for (int tries = 0; tries < s->nworkers; tries++) {
    struct worker *w = least_busy(s, now);
    if (queue_push(w, fd) == 0) {
      w->handed = 1;
      return;
    }
  }
  slog_at(LOG_ERROR, "every worker's queue of %d clients is full: closing a connection",
          ACCEPT_QUEUE);
  close(fd);
}

static void acceptor_run(struct server *s) {
  int err = 0, n = accept_batch(atomic_load(&s->listen_fd), give_to_least_busy, s, &err);
  for (int i = 0; i < s->nworkers; i++)
    if (s->workers[i].handed) {
      s->workers[i].handed = 0;
      ev_async_send(s->workers[i].loop, &s->workers[i].handoff);
    }
  if (n == 0 && (err == EAGAIN || err == EWOULDBLOCK)) s->spurious++;
  if (err == EAGAIN || err == EWOULDBLOCK) s->emfile_logged = 0;
  if (out_of_descriptors(err))
    pause_accepting(s->loop, &s->accept_w, &s->accept_retry, &s->emfile_logged, "acceptor", err);
  else if (err && err != EAGAIN && err != EWOULDBLOCK)
    slog_at(LOG_ERROR, "accept: %s", strerror(err));
}

static void on_acceptor(struct ev_loop *loop, ev_io *io, int revents) {
  (void)loop;
  (void)revents;
  acceptor_run((struct server *)((char *)io - offsetof(struct server, accept_w)));
}

static void on_acceptor_retry(struct ev_loop *loop, ev_timer *t, int revents) {
  struct server *s = (struct server *)((char *)t - offsetof(struct server, accept_retry));
  (void)revents;
  if (s->stopping) return;
  ev_io_start(loop, &s->accept_w);
  acceptor_run(s);
}

/* shared: each worker accepts for itself. */
static void give_to_self(int fd, void *arg) { conn_accept(arg, fd); }

static void worker_accept(struct worker *w) {
  int err = 0;
  ev_now_update(w->loop); /* budgets start now, even after a long handler run */
  int n = accept_batch(atomic_load(&w->srv->listen_fd), give_to_self, w, &err);
  if (n == 0 && (err == EAGAIN || err == EWOULDBLOCK)) w->spurious++;
  if (err == EAGAIN || err == EWOULDBLOCK) w->emfile_logged = 0;
  if (out_of_descriptors(err)) {
    char who[32];
    snprintf(who, sizeof who, "worker %d", w->id);
    pause_accepting(w->loop, &w->accept_w, &w->accept_retry, &w->emfile_logged, who, err);
  } else if (err && err != EAGAIN && err != EWOULDBLOCK) {
    slog_at(LOG_ERROR, "worker %d: accept: %s", w->id, strerror(err));
  }
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents) {
  (void)loop;
  (void)revents;
  worker_accept((struct worker *)((char *)io - offsetof(struct worker, accept_w)));
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents) {
  struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, accept_retry));
  (void)revents;
  if (atomic_load(&w->stop)) return;
  ev_io_start(loop, &w->accept_w);
  worker_accept(w);
}

/* ---- starting and stopping ---- */

void accept_worker_init(struct worker *w) {
  ev_async_init(&w->handoff, on_handoff);
  ev_async_start(w->loop, &w->handoff);
  ev_init(&w->accept_retry, on_accept_retry);
}

int accept_worker_start(struct worker *w) {
  if (w->srv->cfg.accept != ACCEPT_SHARED) return 0;
  ev_io_init(&w->accept_w, on_accept, atomic_load(&w->srv->listen_fd), EV_READ);
  ev_io_start(w->loop, &w->accept_w);
  w->accepting = 1;
  return 0;
}

/* The worker stops accepting (SIGTERM): what is queued is served; in shared mode the last worker
   to stop closes the listener, so new clients are refused at once. */
void accept_worker_stop(struct worker *w) {
  struct server *s = w->srv;
  accept_take(w);
  if (!w->accepting) return;
  worker_accept(w); /* serve what is already in the listen queue */
  ev_io_stop(w->loop, &w->accept_w);
  ev_timer_stop(w->loop, &w->accept_retry);
  w->accepting = 0;
  if (atomic_fetch_add(&s->stopped_accepting, 1) + 1 == s->nworkers) {
    int fd = atomic_exchange(&s->listen_fd, -1);
    if (fd >= 0) close(fd);
  }
}

void accept_start(struct server *s) {
  ev_init(&s->accept_retry, on_acceptor_retry);
  if (s->cfg.accept == ACCEPT_SHARED) return;
  ev_io_init(&s->accept_w, on_acceptor, atomic_load(&s->listen_fd), EV_READ);
  ev_io_start(s->loop, &s->accept_w);
}

/* SIGTERM: the acceptor hands on what is in the listen queue, then closes the listener. */
void accept_stop(struct server *s) {
  ev_timer_stop(s->loop, &s->accept_retry);
  if (s->cfg.accept == ACCEPT_SHARED || !ev_is_active(&s->accept_w)) return;
  acceptor_run(s);
  ev_io_stop(s->loop, &s->accept_w);
  int fd = atomic_exchange(&s->listen_fd, -1);
  if (fd >= 0) close(fd);
}

/* Closes the clients still queued for a worker that is going away. */
void accept_worker_close(struct worker *w) {
  int fd;
  while ((fd = queue_pop(w)) >= 0)
    close(fd);
}
