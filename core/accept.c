/* accept.c: how clients reach the workers. direct (the default): the first min(workers, CPUs)
   workers keep the listener in the epoll set their loop sleeps in, with EPOLLEXCLUSIVE, so the
   kernel wakes one sleeping worker per client and a worker busy in Lua (not sleeping) is passed
   over; the other workers get clients from the acceptor, which the watchdog turns on only while
   every direct worker is in a long Lua resume. handoff: the main thread accepts every client and
   hands it to the least busy worker through a queue of its own and an ev_async. shared: every
   worker watches the listener (every idle worker wakes for each client). Measurements:
   docs/accept.md. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accept.h"
#include "clock.h"
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
static void pause_accepting(struct ev_loop *loop, ev_timer *retry, int *logged, const char *who,
                            int err) {
  if (!*logged)
    slog_at(LOG_ERROR, "%s: cannot accept: %s; pausing until descriptors free up", who,
            strerror(err));
  *logged = 1;
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
  uint64_t now = clock_ns();
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
  if (out_of_descriptors(err)) {
    ev_io_stop(s->loop, &s->accept_w);
    pause_accepting(s->loop, &s->accept_retry, &s->emfile_logged, "acceptor", err);
  } else if (err && err != EAGAIN && err != EWOULDBLOCK)
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
  if (s->stopping || (s->cfg.accept == ACCEPT_DIRECT && !atomic_load(&s->overflow))) return;
  ev_io_start(loop, &s->accept_w);
  acceptor_run(s);
}

/* direct: the watchdog's word, in the main thread. */
static void on_accept_toggle(struct ev_loop *loop, ev_async *a, int revents) {
  struct server *s = (struct server *)((char *)a - offsetof(struct server, accept_toggle));
  (void)revents;
  int on = atomic_load(&s->overflow) && !s->stopping;
  if (on && !ev_is_active(&s->accept_w) && !ev_is_active(&s->accept_retry)) {
    ev_io_start(loop, &s->accept_w);
    acceptor_run(s);
  } else if (!on && ev_is_active(&s->accept_w)) {
    ev_io_stop(loop, &s->accept_w);
  }
}

/* direct, from the watchdog thread (every few ms while a worker runs Lua): the acceptor hands
   clients to the other workers while every direct worker is in a long Lua resume. */
void accept_watch(struct server *s, unsigned long long now) {
  if (!atomic_load(&s->watch_direct)) return;
  int all = 1;
  for (int i = 0; i < s->naccepting && all; i++)
    all = rt_busy_since(&s->workers[i], now) >= BUSY_NS;
  if (all != atomic_load(&s->overflow)) {
    atomic_store(&s->overflow, all);
    ev_async_send(s->loop, &s->accept_toggle);
  }
}

/* shared and direct: each worker accepts for itself. */
static void give_to_self(int fd, void *arg) { conn_accept(arg, fd); }

/* direct: libev has no flag for EPOLLEXCLUSIVE, and a flag only EPOLL_CTL_ADD can set. The
   listener is watched by an ev_io as in shared; then, once libev has added it to its set, it is
   deleted and added again with the flag and the data libev gave it (/proc/self/fdinfo of the set
   shows it). libev must then never modify that entry (EPOLL_CTL_MOD fails on an exclusive one,
   and libev would give up on the descriptor): the watcher stays started for the worker's life,
   and pausing (EMFILE) or stopping takes the entry out of the set here, by hand. */
static int loop_epoll_fd(struct ev_loop *loop) {
  if (ev_backend(loop) != EVBACKEND_EPOLL || !(ev_embeddable_backends() & EVBACKEND_EPOLL))
    return -1;
  struct ev_loop *outer = ev_loop_new(EVBACKEND_SELECT);
  if (outer == NULL) return -1;
  ev_embed e; /* ev_embed_start sets its io watcher to the embedded loop's backend descriptor */
  ev_embed_init(&e, NULL, loop);
  ev_embed_start(outer, &e);
  int fd = e.io.fd;
  ev_embed_stop(outer, &e);
  ev_loop_destroy(outer);
  return fd;
}

static int make_exclusive(struct worker *w, int lfd) {
  char path[64], line[256];
  int epfd = w->loop_fd, found = 0;
  unsigned long long data = 0;
  if (epfd < 0) return -1;
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
  FILE *f = fopen(path, "re");
  while (f && !found && fgets(line, sizeof line, f)) {
    int tfd;
    unsigned events;
    found = sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 && tfd == lfd;
  }
  if (f) fclose(f);
  if (!found) return -1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = data};
  if (epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL) < 0) return -1;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0) {
    int e = errno;
    ev.events = EPOLLIN; /* back as libev had it */
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    errno = e;
    return -1;
  }
  w->ep_fd = epfd;
  w->ep_data = data;
  w->listening = 1;
  return 0;
}

/* direct: the first timer of the worker's loop, so after the loop's first iteration has put the
   listener in libev's set. */
static void on_make_exclusive(struct ev_loop *loop, ev_timer *t, int revents) {
  struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, accept_setup));
  (void)loop;
  (void)revents;
  if (!w->accepting || atomic_load(&w->srv->taken_away)) return;
  errno = 0;
  if (make_exclusive(w, w->accept_w.fd) < 0 && w->id == 0)
    slog_at(LOG_WARN,
            "--accept direct: cannot make the listener exclusive (%s); every idle worker wakes "
            "for each client, as with --accept shared",
            errno ? strerror(errno) : "not found in libev's epoll set");
}

/* The worker stops or resumes watching the listener. */
static void listener_off(struct worker *w) {
  if (w->ep_fd < 0) {
    ev_io_stop(w->loop, &w->accept_w);
  } else if (w->listening) {
    epoll_ctl(w->ep_fd, EPOLL_CTL_DEL, w->accept_w.fd, NULL);
    w->listening = 0;
  }
}

static void listener_on(struct worker *w) {
  if (atomic_load(&w->srv->taken_away)) return;
  if (w->ep_fd < 0) {
    ev_io_start(w->loop, &w->accept_w);
  } else if (!w->listening) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = w->ep_data};
    w->listening = epoll_ctl(w->ep_fd, EPOLL_CTL_ADD, w->accept_w.fd, &ev) == 0;
  }
}

static void worker_accept(struct worker *w) {
  int err = 0;
  ev_now_update(w->loop); /* budgets start now, even after a long handler run */
  if (atomic_load(&w->srv->taken_away)) return;
  int n = accept_batch(atomic_load(&w->srv->listen_fd), give_to_self, w, &err);
  if (atomic_load(&w->srv->taken_away)) return; /* it went between the check and the accept */
  if (n == 0 && (err == EAGAIN || err == EWOULDBLOCK)) w->spurious++;
  if (err == EAGAIN || err == EWOULDBLOCK) w->emfile_logged = 0;
  if (out_of_descriptors(err)) {
    char who[32];
    snprintf(who, sizeof who, "worker %d", w->id);
    listener_off(w);
    pause_accepting(w->loop, &w->accept_retry, &w->emfile_logged, who, err);
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
  (void)loop;
  if (atomic_load(&w->stop)) return;
  listener_on(w);
  worker_accept(w);
}

/* ---- starting and stopping ---- */

void accept_worker_init(struct worker *w) {
  w->ep_fd = -1;
  w->loop_fd = loop_epoll_fd(w->loop); /* before the worker is ready: the main thread reads it */
  ev_timer_init(&w->accept_setup, on_make_exclusive, 0., 0.);
  ev_async_init(&w->handoff, on_handoff);
  ev_async_start(w->loop, &w->handoff);
  ev_init(&w->accept_retry, on_accept_retry);
}

int accept_worker_start(struct worker *w) {
  struct server *s = w->srv;
  int lfd = atomic_load(&s->listen_fd);
  if (w->id >= s->naccepting) return 0; /* handoff, or a direct mode's extra worker */
  ev_io_init(&w->accept_w, on_accept, lfd, EV_READ);
  w->accepting = 1; /* also when stopping already: its stop counts it (the last one closes) */
  if (atomic_load(&s->taken_away)) return 0;
  ev_io_start(w->loop, &w->accept_w);
  if (s->cfg.accept == ACCEPT_DIRECT) ev_timer_start(w->loop, &w->accept_setup);
  return 0;
}

/* The worker stops accepting (SIGTERM): what is queued is served; the last worker to stop
   closes the listener (or what take_away left in its place). */
void accept_worker_stop(struct worker *w) {
  struct server *s = w->srv;
  accept_take(w);
  if (!w->accepting) return;
  worker_accept(w); /* serve what is already in the listen queue */
  listener_off(w);
  ev_io_stop(w->loop, &w->accept_w); /* direct: libev leaves its set alone when stopping */
  ev_timer_stop(w->loop, &w->accept_retry);
  ev_timer_stop(w->loop, &w->accept_setup);
  w->accepting = 0;
  if (atomic_fetch_add(&s->stopped_accepting, 1) + 1 == s->naccepting) {
    int fd = atomic_exchange(&s->listen_fd, -1);
    if (fd >= 0) close(fd);
  }
}

/* SIGTERM in direct and shared: new clients must be refused at once, as in handoff, though the
   workers may be in Lua and slow to stop watching. So the main thread takes the listener out of
   each worker's set (epoll_ctl is safe from any thread), accepts what is in the listen queue and
   hands it on, and drops this process's hold on the listening socket: the descriptor becomes an
   unconnected socket (dup3), so that no worker's libev ever sees its number reused; the last
   worker to stop closes that. Without libev's sets in hand, the last worker closes the listener
   itself, later. Once only: a second call (the stop after the loop, when a worker never got to
   stop accepting) would accept from the placeholder. */
static void take_away(struct server *s) {
  int lfd = atomic_load(&s->listen_fd);
  if (lfd < 0 || atomic_load(&s->taken_away)) return;
  for (int i = 0; i < s->naccepting; i++)
    if (s->workers[i].loop_fd < 0) return;
  int ph = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ph < 0) return;
  for (int i = 0; i < s->naccepting; i++)
    epoll_ctl(s->workers[i].loop_fd, EPOLL_CTL_DEL, lfd, NULL);
  acceptor_run(s);
  atomic_store(&s->taken_away, 1);
  dup3(ph, lfd, O_CLOEXEC);
  close(ph);
}

void accept_start(struct server *s) {
  int mode = s->cfg.accept;
  ev_init(&s->accept_retry, on_acceptor_retry);
  s->naccepting = mode == ACCEPT_SHARED   ? s->nworkers
                  : mode == ACCEPT_DIRECT ? (s->ncpu < s->nworkers ? s->ncpu : s->nworkers)
                                          : 0;
  if (s->naccepting < 1 && mode != ACCEPT_HANDOFF) s->naccepting = 1;
  if (mode == ACCEPT_SHARED) return;
  ev_io_init(&s->accept_w, on_acceptor, atomic_load(&s->listen_fd), EV_READ);
  if (mode == ACCEPT_HANDOFF) {
    ev_io_start(s->loop, &s->accept_w);
  } else if (s->naccepting < s->nworkers) {
    ev_async_init(&s->accept_toggle, on_accept_toggle);
    ev_async_start(s->loop, &s->accept_toggle);
    atomic_store(&s->watch_direct, 1);
  }
}

/* SIGTERM: the acceptor hands on what is in the listen queue, then closes the listener (direct
   and shared: the last worker to stop accepting closes it). Idempotent: it runs at the stop
   signal and again after the loop. */
void accept_stop(struct server *s) {
  ev_timer_stop(s->loop, &s->accept_retry);
  if (s->cfg.accept != ACCEPT_HANDOFF) {
    atomic_store(&s->watch_direct, 0);
    if (s->cfg.accept == ACCEPT_DIRECT && ev_is_active(&s->accept_toggle))
      ev_async_stop(s->loop, &s->accept_toggle);
    ev_io_stop(s->loop, &s->accept_w);
    take_away(s);
    return;
  }
  if (!ev_is_active(&s->accept_w)) return;
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
