/* server.c: the main thread: start the workers, open the listener, own the signals, stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accept.h"
#include "clock.h"
#include "resolver.h"
#include "rt.h"
#include "server.h"
#include "shdict.h"
#include "stats.h"
#include "worker.h"

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
  slog_at(LOG_WARN, "grace period of %g s is over: abandoning the requests still running",
          s->cfg.grace);
  wake_all(s, 2);
  for (int i = 0; i < s->nworkers; i++)
    rt_interrupt(&s->workers[i]);
}

/* The second signal's deadline: the workers did not stop (a blocking C call, or a __gc that
   loops): the process ends now. */
static void on_hard_stop(struct ev_loop *loop, ev_timer *t, int revents) {
  struct server *s = server_of(t, offsetof(struct server, hard_stop));
  (void)loop;
  (void)revents;
  slog_at(LOG_ERROR, "%d worker(s) did not stop within 1 s of the second signal: exiting now",
          atomic_load(&s->running));
  listen_close(s);
  log_stop(s->log);
  _exit(1);
}

/* SIGTERM or SIGINT: stop accepting, let requests finish (--grace); a second signal stops at
   once, unless it came within STOP_TOGETHER of the first (then it is the same stop): the guard
   stops the Lua each worker runs, and after a second the process exits regardless. In a serving
   process they only ever drain; the supervisor's SIG_STOP_NOW stops it at once. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *sig, int revents) {
  struct server *s = sig->signum == SIGTERM  ? server_of(sig, offsetof(struct server, sig_term))
                     : sig->signum == SIGINT ? server_of(sig, offsetof(struct server, sig_int))
                                             : server_of(sig, offsetof(struct server, sig_now));
  int now = sig->signum == SIG_STOP_NOW || (s->stopping && !s->serving);
  (void)revents;
  if (now && sig->signum != SIG_STOP_NOW && s->stopping == 1 &&
      clock_now() - s->stop_time < STOP_TOGETHER) {
    slog("%s %.0f ms after the first stop signal: the same graceful stop",
         sig->signum == SIGINT ? "SIGINT" : "SIGTERM", (clock_now() - s->stop_time) * 1000);
    return;
  }
  if (!s->stopping) {
    s->stopping = 1;
    s->stop_time = clock_now();
    listener_unlink(&s->lst);
    accept_stop(s);
    wake_all(s, 1);
    ev_timer_set(&s->grace_timer, s->cfg.grace, 0.);
    ev_timer_start(loop, &s->grace_timer);
  }
  if (!now || s->stopping == 2) return;
  s->stopping = 2;
  slog("second stop signal: stopping now");
  wake_all(s, 2);
  for (int i = 0; i < s->nworkers; i++)
    rt_interrupt(&s->workers[i]);
  ev_timer_set(&s->hard_stop, 1., 0.);
  ev_timer_start(loop, &s->hard_stop);
}

/* SIGHUP: every worker loads the app anew; the listener stays open throughout. */
static void on_reload_signal(struct ev_loop *loop, ev_signal *sig, int revents) {
  struct server *s = server_of(sig, offsetof(struct server, sig_hup));
  (void)loop;
  (void)revents;
  if (s->stopping) return;
  if (!s->serving) slog("reloading %s", s->cfg.app ? s->cfg.app : "(function handler)");
  for (int i = 0; i < s->nworkers; i++) {
    atomic_store(&s->workers[i].reload, 1);
    ev_async_send(s->workers[i].loop, &s->workers[i].wake);
  }
}

static double mtime_of(const char *path) {
  struct stat st;
  if (stat(path, &st) < 0) return -1;
  return (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
}

/* --reload-on-change watches path too: the app file, and each Lua module a worker loaded (at
   load time or later, from a handler). Called from any thread. */
void server_watch(struct server *s, const char *path) {
  pthread_mutex_lock(&s->files_mu);
  int i = 0;
  while (i < s->nfiles && strcmp(s->files[i], path) != 0)
    i++;
  if (i == s->nfiles && s->nfiles == s->files_cap) {
    int cap = s->files_cap ? s->files_cap * 2 : 16;
    char **f = realloc(s->files, (size_t)cap * sizeof *f);
    if (f) s->files = f;
    double *m = f ? realloc(s->mtimes, (size_t)cap * sizeof *m) : NULL;
    if (m) {
      s->mtimes = m;
      s->files_cap = cap;
    }
  }
  if (i == s->nfiles && s->nfiles < s->files_cap && (s->files[i] = strdup(path)) != NULL) {
    s->mtimes[i] = mtime_of(path);
    s->nfiles++;
  }
  pthread_mutex_unlock(&s->files_mu);
}

static void on_watch_timer(struct ev_loop *loop, ev_timer *t, int revents) {
  struct server *s = server_of(t, offsetof(struct server, watch_timer));
  const char *changed = NULL;
  (void)revents;
  pthread_mutex_lock(&s->files_mu);
  for (int i = 0; i < s->nfiles; i++) {
    double m = mtime_of(s->files[i]);
    if (m != s->mtimes[i]) {
      s->mtimes[i] = m;
      changed = changed ? changed : s->files[i];
    }
  }
  if (changed) slog("%s changed", changed);
  pthread_mutex_unlock(&s->files_mu);
  if (changed) on_reload_signal(loop, &s->sig_hup, 0);
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
    if (worker_init(w, s, i) < 0 || (w->st = stats_worker(s->stats, s->stats_slot, i),
                                     pthread_create(&w->thread, NULL, worker_main, w) != 0)) {
      snprintf(err, errlen, "cannot start worker %d", i);
      s->nworkers = i;
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      return -1;
    }
    atomic_fetch_add(&s->running, 1);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&s->mu);
  while (s->ready + s->failed < s->nworkers)
    pthread_cond_wait(&s->cv, &s->mu);
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

/* Waits for the worker threads, stops the resolver (whose last answers go to their queues), then
   frees the workers' loops. */
static void join_workers(struct server *s) {
  for (int i = 0; i < s->nworkers; i++)
    pthread_join(s->workers[i].thread, NULL);
  resolver_stop(s->resolver);
  s->resolver = NULL;
  for (int i = 0; i < s->nworkers; i++)
    worker_fini(&s->workers[i]);
}

/* SIGUSR2 upgrades, which is the supervisor's business: here it is only logged. */
static void on_usr2(struct ev_loop *loop, ev_signal *sig, int revents) {
  struct server *s = server_of(sig, offsetof(struct server, sig_usr2));
  (void)loop;
  (void)revents;
  slog_at(LOG_WARN, "SIGUSR2 ignored: %s",
          s->serving ? "upgrades are done by the supervising process (send it there)"
                     : "no supervising process to upgrade with (--no-master)");
}

void server_serving_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
  sigaddset(set, SIGUSR1);
  sigaddset(set, SIGUSR2);
  sigaddset(set, SIG_STOP_NOW);
}

static void on_sigpipe(int sig) { (void)sig; }

void server_quiet_sigpipe(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigpipe;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, NULL);
}

static void on_usr1(struct ev_loop *loop, ev_signal *sig, int revents) {
  struct server *s = server_of(sig, offsetof(struct server, sig_usr1));
  (void)loop;
  (void)revents;
  log_reopen(s->log);
}

static void start_signals(struct server *s) {
  ev_signal_init(&s->sig_term, on_stop_signal, SIGTERM);
  ev_signal_init(&s->sig_int, on_stop_signal, SIGINT);
  ev_signal_init(&s->sig_hup, on_reload_signal, SIGHUP);
  ev_signal_init(&s->sig_usr1, on_usr1, SIGUSR1);
  ev_signal_init(&s->sig_usr2, on_usr2, SIGUSR2);
  ev_signal_init(&s->sig_now, on_stop_signal, SIG_STOP_NOW);
  ev_signal_start(s->loop, &s->sig_term);
  ev_signal_start(s->loop, &s->sig_int);
  ev_signal_start(s->loop, &s->sig_hup);
  ev_signal_start(s->loop, &s->sig_usr1);
  ev_signal_start(s->loop, &s->sig_usr2);
  ev_signal_start(s->loop, &s->sig_now);
  if (s->serving) { /* blocked since the fork (super.c): a signal that came meanwhile acts now */
    sigset_t set;
    server_serving_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  }
  ev_init(&s->grace_timer, on_grace);
  ev_init(&s->hard_stop, on_hard_stop);
  if (s->cfg.reload_on_change && s->cfg.app) {
    ev_timer_init(&s->watch_timer, on_watch_timer, 1., 1.);
    ev_timer_start(s->loop, &s->watch_timer);
  }
}

static void stop_signals(struct server *s) {
  ev_signal_stop(s->loop, &s->sig_term);
  ev_signal_stop(s->loop, &s->sig_int);
  ev_signal_stop(s->loop, &s->sig_hup);
  ev_signal_stop(s->loop, &s->sig_usr1);
  ev_signal_stop(s->loop, &s->sig_usr2);
  ev_signal_stop(s->loop, &s->sig_now);
  ev_timer_stop(s->loop, &s->grace_timer);
  ev_timer_stop(s->loop, &s->hard_stop);
  ev_timer_stop(s->loop, &s->watch_timer);
}

int server_check(struct server *s, char *err, size_t errlen) {
  struct worker w;
  struct worker_stats st;
  int rc = 1;
  s->nworkers = 1;
  s->workers = &w;
  if ((s->cfg.user || s->cfg.group) && priv_drop(&s->cfg, err, errlen) < 0) return 1;
  if (worker_init(&w, s, 0) < 0) {
    snprintf(err, errlen, "cannot create an event loop");
    return 1;
  }
  memset(&st, 0, sizeof st);
  w.st = &st;
  for (int i = 0; i < s->cfg.nshared; i++)
    if ((s->dicts[i] = shdict_new(s->cfg.shared_name[i], s->cfg.shared_size[i])) != NULL)
      s->ndicts = i + 1;
  if (worker_setup(&w) == 0)
    rc = 0;
  else
    snprintf(err, errlen, "%s", w.load_error);
  worker_teardown(&w);
  worker_fini(&w);
  for (int i = 0; i < s->ndicts; i++)
    shdict_free(s->dicts[i]);
  s->workers = NULL;
  return rc;
}

/* The figures' table: the supervisor's (a serving process), or one of this process's. */
static int open_stats(struct server *s, char *err, size_t errlen) {
  if (s->serving) {
    s->stats = stats_table_attach(s->stats_fd);
    close(s->stats_fd);
    if (s->stats == NULL || s->stats_slot < 0 || (uint32_t)s->stats_slot >= s->stats->nprocs ||
        (uint32_t)s->nworkers > s->stats->nworkers) {
      snprintf(err, errlen, "--serving: not the supervisor's figures table");
      return -1;
    }
    s->stats_shape[0] = (int)s->stats->nprocs; /* before any app code could write the header */
    s->stats_shape[1] = (int)s->stats->nworkers;
  } else if ((s->stats = stats_table_new(1, s->nworkers, NULL)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  struct proc_stats *ps = stats_proc(s->stats, s->stats_slot);
  for (int i = 0; i < s->nworkers; i++)
    memset(stats_worker(s->stats, s->stats_slot, i), 0, sizeof(struct worker_stats));
  stat_set(&ps->generation, (uint64_t)s->generation);
  stat_set(&ps->started_ms, stats_wall_ms());
  stat_set(&ps->pid, (uint64_t)getpid());
  return 0;
}

/* A serving process tells its supervisor it serves (and the supervisor logs the line). */
static void announce(struct server *s) {
  if (!s->serving) {
    slog("listening on %s (%d worker%s)", s->lst.name, s->nworkers, s->nworkers == 1 ? "" : "s");
    if (s->web.lst.fd >= 0) slog("stats on %s", s->web.lst.name);
    if (s->cfg.memory_limit > 0) slog("Lua memory limit: %g MiB per worker", s->cfg.memory_limit);
    return;
  }
  stat_set(&stats_proc(s->stats, s->stats_slot)->ready, 1);
  if (s->ready_fd >= 0 && write(s->ready_fd, "r", 1) < 0)
    slog_at(LOG_WARN, "cannot tell the supervisor");
  if (s->ready_fd >= 0) close(s->ready_fd);
  s->ready_fd = -1;
}

/* A serving process stops (gracefully) when its supervisor is gone. The supervisor sets the
   parent-death signal before exec; changing the user clears it, so it is set again, and a
   supervisor that died in between shows as a new parent. */
static void watch_supervisor(pid_t ppid) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != ppid) raise(SIGTERM);
}

int server_run(struct server *s, char *err, size_t errlen) {
  pid_t ppid = getppid();
  sigset_t late;
  s->pid = (long)getpid();
  int rc = 1, drop = (s->cfg.user || s->cfg.group) && !s->serving;
  s->nworkers = s->fn_L ? 1 : s->cfg.workers > 0 ? s->cfg.workers : online_cpus();
  s->ncpu = online_cpus();
  s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
  s->lst.fd = s->web.lst.fd = -1;
  s->started = clock_now();
  if (s->workers == NULL) {
    snprintf(err, errlen, "out of memory");
    return 1;
  }
  if (open_stats(s, err, errlen) < 0) {
    free(s->workers);
    return 1;
  }
  server_quiet_sigpipe();
  s->log = log_start(s->cfg.log_file, s->cfg.access_log, s->cfg.log_level, err, errlen);
  if (s->log == NULL) {
    free(s->workers);
    return 1;
  }
  log_count_reopen_failures(s->log, &s->stats->log_reopen_failures);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  pthread_mutex_init(&s->files_mu, NULL);
  for (int i = 0; i < s->cfg.nshared; i++) {
    s->dicts[i] = shdict_new(s->cfg.shared_name[i], s->cfg.shared_size[i]);
    if (s->dicts[i] == NULL) {
      snprintf(err, errlen, "out of memory for the shared dictionaries");
      goto fail;
    }
    s->ndicts = i + 1;
  }
  s->loop = ev_loop_new(EVFLAG_AUTO); /* not the default loop: it would reap handlers' children */
  if (s->loop == NULL) {
    snprintf(err, errlen, "cannot create the main event loop");
    goto fail;
  }
  ev_async_init(&s->done, on_worker_done);
  ev_async_start(s->loop, &s->done);
  /* The app loads before the socket exists, so a broken app leaves nothing behind; with --user
     the socket is bound first, as root, and the app loads after the privileges are dropped. */
  if (drop && (listen_open(s, err, errlen) < 0 || priv_drop(&s->cfg, err, errlen) < 0)) goto fail;
  if (s->serving && (listen_open(s, err, errlen) < 0 ||
                     ((s->cfg.user || s->cfg.group) && priv_drop(&s->cfg, err, errlen) < 0)))
    goto fail;
  if (s->serving) watch_supervisor(ppid);
  if (s->cfg.app && s->cfg.reload_on_change) server_watch(s, s->cfg.app);
  if ((s->resolver = resolver_start(2)) == NULL) {
    snprintf(err, errlen, "cannot start the resolver threads");
    goto fail;
  }
  if (start_workers(s, err, errlen) < 0) goto fail;
  if (rt_guard_start(s, err, errlen) < 0) goto fail;
  if (!drop && !s->serving && listen_open(s, err, errlen) < 0) goto fail;
  if (stats_web_start(&s->web, s->serving ? NULL : s->cfg.stats, s->loop, s->stats, err, errlen) <
      0)
    goto fail;
  if (listen_write_pid(s, err, errlen) < 0) goto fail; /* all is bound: a failed start leaves it */
  start_signals(s); /* before the "listening" line: whoever reads it may signal at once */
  accept_start(s);
  announce(s);
  release_workers(s, 1);
  ev_run(s->loop, 0);
  /* what is left is cleaning up: a late signal waits (for the program: for ever, it exits;
     handle_requests gives the caller its mask back) */
  server_serving_signals(&late);
  pthread_sigmask(SIG_BLOCK, &late, NULL);
  stop_signals(s);
  accept_stop(s);
  rc = 0;
fail:
  release_workers(s, 2);
  join_workers(s);
  rt_guard_stop(s);
  if (s->loop) {
    ev_async_stop(s->loop, &s->done);
    stats_web_stop(&s->web);
    ev_loop_destroy(s->loop);
    s->loop = NULL;
  }
  listen_close(s);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->files_mu);
  for (int i = 0; i < s->ndicts; i++)
    shdict_free(s->dicts[i]);
  s->ndicts = 0;
  for (int i = 0; i < s->nfiles; i++)
    free(s->files[i]);
  free(s->files);
  free(s->mtimes);
  free(s->workers);
  s->workers = NULL;
  if (s->stats) stat_set(&stats_proc(s->stats, s->stats_slot)->pid, 0);
  log_count_reopen_failures(s->log, NULL);
  if (s->serving)
    stats_table_unmap(s->stats, s->stats_shape[0], s->stats_shape[1]);
  else
    stats_table_free(s->stats);
  s->stats = NULL;
  /* why it failed goes to stderr (main.c) and, with --log-file, to the log too: an upgrade's new
     serving process that cannot load the app says so where the operator looks */
  if (rc != 0 && err[0] && s->log && s->cfg.log_file) slog_at(LOG_ERROR, "%s", err);
  log_stop(s->log);
  s->log = NULL;
  return rc;
}
