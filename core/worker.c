/* worker.c: one worker thread: its loop, accepting, reloading and stopping. The Lua side is
   reached through rt.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "rt.h"
#include "server.h"
#include "tls.h"
#include "worker.h"

/* The loop ends once the worker took the stop in on_wake (w->stopping: it has taken the clients
   handed to it) and nothing runs; the stop flag alone is not enough: a connection that ends after
   the main thread set it but before on_wake ran would end the loop with handed clients unserved
   (closed unanswered: the losses of issue 18's SIGUSR2 under load). */
void worker_conn_done(struct worker *w) {
  if (w->stopping && w->nconns == 0 && rt_live(w) == 0) ev_break(w->loop, EVBREAK_ALL);
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
  if (stop == 1 && !w->stopping) {
    w->stopping = 1;
    accept_worker_stop(w);
    rt_stopping(w);
    worker_conn_done(w);
  }
}

/* Prepares what the main thread may touch before the thread starts: the loop and its wake-up. */
int worker_init(struct worker *w, struct server *s, int id) {
  memset(w, 0, sizeof *w);
  w->srv = s;
  w->id = id;
  w->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
  if (w->loop == NULL) return -1;
  ev_async_init(&w->wake, on_wake);
  ev_async_start(w->loop, &w->wake);
  accept_worker_init(w);
  pool_init(&w->pool, w->loop);
  resolve_done_init(&w->resolved, w->loop);
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
  pool_fini(&w->pool);
  tls_thread_cleanup();
  accept_worker_close(w);
  free(w->hdrs);
  free(w->scratch);
  w->hdrs = NULL;
  w->scratch = NULL;
}

void worker_fini(struct worker *w) {
  rt_free(w);
  resolve_done_fini(&w->resolved);
  ev_loop_destroy(w->loop);
  w->loop = NULL;
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
    if (accept_worker_start(w) < 0)
      slog_at(LOG_ERROR, "worker %d: cannot watch the listener: %s", w->id, strerror(errno));
    else
      ev_run(w->loop, 0);
  }
  if (ok && s->go == 1)
    slog_at(LOG_INFO, "worker %d: served %llu requests (%llu errors, %llu empty wake-ups)", w->id,
            (unsigned long long)stat_get(&w->st->requests),
            (unsigned long long)stat_get(&w->st->errors), (unsigned long long)w->spurious);
  worker_teardown(w);
  atomic_fetch_sub(&s->running, 1);
  ev_async_send(s->loop, &s->done);
  return NULL;
}
