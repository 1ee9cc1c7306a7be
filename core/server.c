/* server.c: the main thread: start the workers, open the listener, own the signals, stop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

static struct server *server_of(void *field, size_t offset) {
  return (struct server *)((char *)field - offset);
}

static void wake_all(struct server *s, int stop) {
  for (int i = 0; i < s->nworkers; i++) {
    atomic_store(&s->workers[i].stop, stop);
    ev_async_send(s->workers[i].loop, &s->workers[i].wake);
  }
}

static void on_grace(struct ev_loop *loop, ev_timer *t, int revents) {
  struct server *s = server_of(t, offsetof(struct server, grace_timer));
  (void)loop;
  (void)revents;
  slog("grace period of %g s is over: abandoning the requests still running", s->cfg.grace);
  wake_all(s, 2);
}

/* SIGTERM or SIGINT: stop accepting, let requests finish; a second signal stops at once. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *sig, int revents) {
  struct server *s = sig->signum == SIGTERM ? server_of(sig, offsetof(struct server, sig_term))
                                            : server_of(sig, offsetof(struct server, sig_int));
  (void)revents;
  if (s->stopping) {
    slog("second stop signal: stopping now");
    wake_all(s, 2);
    return;
  }
  s->stopping = 1;
  listener_unlink(&s->lst);
  wake_all(s, 1);
  ev_timer_set(&s->grace_timer, s->cfg.grace, 0.);
  ev_timer_start(loop, &s->grace_timer);
}

static void on_worker_done(struct ev_loop *loop, ev_async *a, int revents) {
  struct server *s = server_of(a, offsetof(struct server, done));
  (void)revents;
  if (atomic_load(&s->running) == 0) ev_break(loop, EVBREAK_ALL);
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Starts the workers and waits until each has built its state or failed. */
static int start_workers(struct server *s, char *err, size_t errlen) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the main thread only */
  for (int i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    if (worker_init(w, s, i) < 0 || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      snprintf(err, errlen, "cannot start worker %d", i);
      s->nworkers = i;
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      return -1;
    }
    atomic_fetch_add(&s->running, 1);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&s->mu);
  while (s->ready + s->failed < s->nworkers) pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nworkers; i++)
    if (s->workers[i].load_error[0]) {
      snprintf(err, errlen, "%s", s->workers[i].load_error);
      return -1;
    }
  return 0;
}

static void release_workers(struct server *s, int go) {
  pthread_mutex_lock(&s->mu);
  s->go = go;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void join_workers(struct server *s) {
  for (int i = 0; i < s->nworkers; i++) {
    pthread_join(s->workers[i].thread, NULL);
    ev_loop_destroy(s->workers[i].loop);
  }
}

int server_run(struct server *s, char *err, size_t errlen) {
  int rc = 1;
  s->nworkers = s->fn_L ? 1 : s->cfg.workers > 0 ? s->cfg.workers : online_cpus();
  s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
  s->lst.fd = -1;
  if (s->workers == NULL) {
    snprintf(err, errlen, "out of memory");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  s->loop = ev_loop_new(EVFLAG_AUTO); /* not the default loop: it would reap handlers' children */
  if (s->loop == NULL) {
    snprintf(err, errlen, "cannot create the main event loop");
    free(s->workers);
    return 1;
  }
  ev_async_init(&s->done, on_worker_done);
  ev_async_start(s->loop, &s->done);
  if (start_workers(s, err, errlen) < 0) goto fail;
  char where[512];
  const char *addr = s->cfg.socket ? s->cfg.socket : config_default_socket(where, sizeof where);
  if (listener_open(&s->lst, addr, s->cfg.socket_mode, err, errlen) < 0) goto fail;
  atomic_store(&s->listen_fd, s->lst.fd);
  slog("listening on %s (%d worker%s)", s->lst.name, s->nworkers, s->nworkers == 1 ? "" : "s");
  ev_signal_init(&s->sig_term, on_stop_signal, SIGTERM);
  ev_signal_init(&s->sig_int, on_stop_signal, SIGINT);
  ev_signal_start(s->loop, &s->sig_term);
  ev_signal_start(s->loop, &s->sig_int);
  ev_init(&s->grace_timer, on_grace);
  release_workers(s, 1);
  ev_run(s->loop, 0);
  ev_signal_stop(s->loop, &s->sig_term);
  ev_signal_stop(s->loop, &s->sig_int);
  ev_timer_stop(s->loop, &s->grace_timer);
  rc = 0;
fail:
  release_workers(s, 2);
  join_workers(s);
  ev_async_stop(s->loop, &s->done);
  if (atomic_load(&s->listen_fd) < 0) s->lst.fd = -1; /* a worker closed it */
  listener_close(&s->lst);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->workers);
  s->workers = NULL;
  ev_loop_destroy(s->loop);
  s->loop = NULL;
  return rc;
}
