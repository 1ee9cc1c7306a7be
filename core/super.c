/* super.c: the supervising process. It binds the listener and keeps it open for its whole life,
   runs the serving processes (this program again, with --serving: they inherit the listener and
   a shared table for their figures), replaces one that dies (clients wait in the listen queue
   meanwhile; a crash loop backs off), forwards the signals, upgrades the binary on SIGUSR2 (new
   processes first, then the old ones drain), serves --stats for all, and reaps every child, so
   it is fit to be PID 1. It starts no threads but the log's, and runs no Lua. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "server.h"
#include "stats.h"

#define MAX_PROCS 256
#define QUICK_DEATH                                                                                \
  10.0 /* a serving process that dies younger than this counts as a crash loop                     \
        */
#define MAX_BACKOFF 30.0

struct child {
  pid_t pid; /* 0: the slot is free */
  int generation;
  int ready;    /* it said it serves */
  int draining; /* told to stop (an upgrade, or the program stops): not replaced */
  double started;
  int ready_fd;
  ev_io ready_w;
  struct super *sp;
};

struct super {
  struct server *s;
  struct ev_loop *loop;
  char exe[4096];
  int argc;
  char **argv;
  int nprocs, nworkers, nslots, generation;
  int stopping;     /* 1: draining, 2: at once */
  double stop_time; /* the first stop signal (monotonic) */
  int startup;      /* the first generation is not all ready yet */
  int upgrading;
  int upgrade_waits; /* a SIGUSR2 waits for the last upgrade's old processes to free slots */
  int status;        /* the exit status */
  int quick_deaths;
  int stats_fd;
  struct stats_table *t;
  struct child kids[2 * MAX_PROCS];
  ev_signal sig_term, sig_int, sig_hup, sig_usr1, sig_usr2, sig_chld;
  ev_timer respawn, stop_deadline;
};

static const char *describe(int status, char *buf, size_t len) {
  if (WIFSIGNALED(status))
    snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
  return buf;
}

static void on_ready(struct ev_loop *loop, ev_io *io, int revents);

/* Starts a serving process in slot: this program again, with the listener, the table and a pipe
   to say it is ready as inherited descriptors. */
static int spawn(struct super *sp, int slot, char *err, size_t errlen) {
  struct server *s = sp->s;
  struct child *k = &sp->kids[slot];
  int pfd[2];
  char spec[96];
  if (pipe2(pfd, O_CLOEXEC) < 0) {
    snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
    return -1;
  }
  fcntl(pfd[0], F_SETFL, O_NONBLOCK); /* read when it died too: a grandchild may hold the end */
  snprintf(spec, sizeof spec, "%d,%d,%d,%d,%d", s->lst.fd, sp->stats_fd, slot, pfd[1],
           sp->generation);
  char **argv = calloc((size_t)sp->argc + 3, sizeof *argv);
  if (argv == NULL) {
    close(pfd[0]);
    close(pfd[1]);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  argv[0] = sp->exe;
  for (int i = 1; i < sp->argc; i++)
    argv[i] = sp->argv[i];
  argv[sp->argc] = "--serving";
  argv[sp->argc + 1] = spec;
  pid_t pid = fork();
  if (pid == 0) { /* only async-signal-safe calls until exec */
    sigset_t none;
    fcntl(s->lst.fd, F_SETFD, 0);
    fcntl(sp->stats_fd, F_SETFD, 0);
    fcntl(pfd[1], F_SETFD, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* the supervisor gone: drain and stop */
    server_serving_signals(&none);    /* held until its handlers are set (server.c) */
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(sp->exe, argv);
    char why[1 + sizeof(int)] = {'x'}; /* why exec failed, for the supervisor's log */
    int e = errno;
    memcpy(why + 1, &e, sizeof e);
    if (write(pfd[1], why, sizeof why) < 0) _exit(127);
    _exit(127);
  }
  free(argv);
  close(pfd[1]);
  if (pid < 0) {
    close(pfd[0]);
    snprintf(err, errlen, "cannot start a serving process: %s", strerror(errno));
    return -1;
  }
  k->pid = pid;
  k->generation = sp->generation;
  k->ready = k->draining = 0;
  k->started = clock_now();
  k->ready_fd = pfd[0];
  k->sp = sp;
  ev_io_init(&k->ready_w, on_ready, pfd[0], EV_READ);
  ev_io_start(sp->loop, &k->ready_w);
  return 0;
}

static void close_ready(struct child *k) {
  if (k->ready_fd < 0) return;
  ev_io_stop(k->sp->loop, &k->ready_w);
  close(k->ready_fd);
  k->ready_fd = -1;
}

static void signal_kids(struct super *sp, int generation, int sig) {
  for (int i = 0; i < sp->nslots; i++)
    if (sp->kids[i].pid > 0 && (generation < 0 || sp->kids[i].generation == generation))
      kill(sp->kids[i].pid, sig);
}

static int count(struct super *sp, int generation, int ready_only) {
  int n = 0;
  for (int i = 0; i < sp->nslots; i++)
    n += sp->kids[i].pid > 0 && sp->kids[i].generation == generation &&
         (!ready_only || sp->kids[i].ready);
  return n;
}

static void announce(struct super *sp) {
  struct server *s = sp->s;
  int workers = sp->nprocs * sp->nworkers;
  if (sp->nprocs == 1)
    slog("listening on %s (%d worker%s)", s->lst.name, workers, workers == 1 ? "" : "s");
  else
    slog("listening on %s (%d workers in %d processes)", s->lst.name, workers, sp->nprocs);
  if (s->web.lst.fd >= 0) slog("stats on %s", s->web.lst.name);
}

/* The new generation is all ready: the old one drains. */
static void upgraded(struct super *sp) {
  int old = sp->generation - 1;
  for (int i = 0; i < sp->nslots; i++)
    if (sp->kids[i].pid > 0 && sp->kids[i].generation == old) sp->kids[i].draining = 1;
  signal_kids(sp, old, SIGTERM);
  sp->upgrading = 0;
  stat_add(&sp->t->upgrades, 1);
  slog("upgrade: %d new serving process%s serve%s; the old ones drain", sp->nprocs,
       sp->nprocs == 1 ? "" : "es", sp->nprocs == 1 ? "s" : "");
}

/* What a serving process said on its pipe: 1 it serves, 0 nothing (yet), -1 it could not run the
   program file (said in the log and counted). */
static int hear(struct child *k) {
  char word[1 + sizeof(int)];
  int e;
  if (k->ready_fd < 0) return 0;
  ssize_t n = read(k->ready_fd, word, sizeof word);
  close_ready(k);
  if (n == 1 && word[0] == 'r') return 1;
  if (n != (ssize_t)sizeof word || word[0] != 'x') return 0; /* its death is handled on SIGCHLD */
  memcpy(&e, word + 1, sizeof e);
  stat_add(&k->sp->t->spawn_failures, 1);
  slog_at(LOG_ERROR, "cannot run the program file %s: %s", k->sp->exe, strerror(e));
  return -1;
}

static void on_ready(struct ev_loop *loop, ev_io *io, int revents) {
  struct child *k = (struct child *)((char *)io - offsetof(struct child, ready_w));
  struct super *sp = k->sp;
  (void)loop;
  (void)revents;
  if (hear(k) != 1) return;
  k->ready = 1;
  if (sp->startup && count(sp, sp->generation, 1) == sp->nprocs) {
    sp->startup = 0;
    announce(sp);
  }
  if (sp->upgrading && count(sp, sp->generation, 1) == sp->nprocs) upgraded(sp);
}

/* The crash backoff: 0 for the first quick death (or failed start) in a row, then 1 s, 2 s, ...
   30 s. */
static double backoff(struct super *sp) {
  double wait = 0;
  for (int i = 1; i < sp->quick_deaths && wait < MAX_BACKOFF; i++)
    wait = wait ? wait * 2 : 1;
  return wait > MAX_BACKOFF ? MAX_BACKOFF : wait;
}

static void respawn_in(struct super *sp, double wait) {
  stat_set(&sp->t->backoff_ms, (uint64_t)(wait * 1000));
  if (!ev_is_active(&sp->respawn)) {
    ev_timer_set(&sp->respawn, wait, 0.);
    ev_timer_start(sp->loop, &sp->respawn);
  }
}

/* The new generation failed before it served (why is logged): it goes, the running one serves
   on. */
static void upgrade_failed(struct super *sp) {
  stat_add(&sp->t->upgrade_failures, 1);
  signal_kids(sp, sp->generation, SIGTERM);
  for (int i = 0; i < sp->nslots; i++)
    if (sp->kids[i].generation == sp->generation) sp->kids[i].draining = 1;
  sp->generation--;
  sp->upgrading = 0;
}

/* Starts a serving process in every free slot of the current generation's share. One that cannot
   be started (no descriptor for its pipe, fork or exec failing) is tried again with the crash
   backoff; in an upgrade, the upgrade fails instead and the running processes serve on. */
static void fill(struct super *sp) {
  char err[256];
  int want = sp->nprocs - count(sp, sp->generation, 0);
  for (int i = 0; i < sp->nslots && want > 0; i++) {
    if (sp->kids[i].pid != 0) continue;
    if (spawn(sp, i, err, sizeof err) < 0) {
      stat_add(&sp->t->spawn_failures, 1);
      if (sp->upgrading) {
        slog_at(LOG_ERROR, "upgrade failed: %s; the running ones go on", err);
        upgrade_failed(sp);
        return;
      }
      sp->quick_deaths++;
      double wait = backoff(sp);
      wait = wait < 1 ? 1 : wait;
      slog_at(LOG_ERROR, "%s; trying again in %g s", err, wait);
      respawn_in(sp, wait);
      return;
    }
    want--;
  }
}

static void on_respawn(struct ev_loop *loop, ev_timer *t, int revents) {
  struct super *sp = (struct super *)((char *)t - offsetof(struct super, respawn));
  (void)loop;
  (void)revents;
  stat_set(&sp->t->backoff_ms, 0);
  if (!sp->stopping) fill(sp);
}

/* A serving process of the current generation died: it is replaced at once; when it died young
   again and again (a crash loop), after a wait that doubles each time: 1 s, 2 s, ... 30 s. */
static void replace(struct super *sp, struct child *k, pid_t pid, int status) {
  char what[96];
  double lived = clock_now() - k->started, wait = 0;
  if (lived < QUICK_DEATH) {
    sp->quick_deaths++;
    wait = backoff(sp);
  } else {
    sp->quick_deaths = 0;
  }
  stat_add(&sp->t->respawns, 1);
  if (wait > 0)
    slog_at(LOG_ERROR,
            "serving process %ld %s after %.1f s; starting another in %g s (%d quick deaths in a "
            "row: a crash loop backs off)",
            (long)pid, describe(status, what, sizeof what), lived, wait, sp->quick_deaths);
  else
    slog_at(LOG_ERROR, "serving process %ld %s after %.1f s; starting another", (long)pid,
            describe(status, what, sizeof what), lived);
  respawn_in(sp, wait);
}

static int free_slots(struct super *sp) {
  int n = 0;
  for (int i = 0; i < sp->nslots; i++)
    n += sp->kids[i].pid == 0;
  return n;
}

/* SIGUSR2's work: a new generation from the program file, in the free slots. */
static void upgrade(struct super *sp) {
  sp->upgrade_waits = 0;
  slog("upgrade: starting %s anew", sp->exe);
  sp->generation++;
  sp->upgrading = 1;
  fill(sp);
}

static void reaped(struct super *sp, pid_t pid, int status) {
  struct child *k = NULL;
  char what[96];
  for (int i = 0; i < sp->nslots && k == NULL; i++)
    if (sp->kids[i].pid == pid) k = &sp->kids[i];
  if (k == NULL) return; /* an orphan we inherited as PID 1 */
  int slot = (int)(k - sp->kids), was_ready = k->ready, generation = k->generation;
  hear(k); /* an exec that failed said why */
  k->pid = 0;
  struct proc_stats *ps = stats_proc(sp->t, slot);
  stat_set(&ps->pid, 0);
  stat_set(&ps->ready, 0);
  int bad = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  if (sp->stopping) {
    if (bad) sp->status = 1;
    if (bad)
      slog_at(LOG_WARN, "serving process %ld %s", (long)pid, describe(status, what, sizeof what));
  } else if (sp->startup) {
    slog_at(LOG_ERROR, "serving process %ld %s before it served", (long)pid,
            describe(status, what, sizeof what));
    sp->status = 1;
    sp->stopping = 2;
    signal_kids(sp, -1, SIGKILL);
  } else if (k->draining) {
    /* an old generation's process, done */
  } else if (sp->upgrading && generation == sp->generation && !was_ready) {
    slog_at(LOG_ERROR,
            "upgrade failed: the new serving process %ld %s before it served; the "
            "running ones go on",
            (long)pid, describe(status, what, sizeof what));
    upgrade_failed(sp);
  } else {
    replace(sp, k, pid, status);
  }
  if (sp->upgrade_waits && !sp->stopping && !sp->upgrading && free_slots(sp) >= sp->nprocs)
    upgrade(sp);
  int alive = 0;
  for (int i = 0; i < sp->nslots; i++)
    alive += sp->kids[i].pid > 0;
  if (sp->stopping && alive == 0) ev_break(sp->loop, EVBREAK_ALL);
}

static void on_chld(struct ev_loop *loop, ev_signal *w, int revents) {
  struct super *sp = (struct super *)((char *)w - offsetof(struct super, sig_chld));
  int status;
  pid_t pid;
  (void)loop;
  (void)revents;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    reaped(sp, pid, status);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents) {
  struct super *sp = (struct super *)((char *)t - offsetof(struct super, stop_deadline));
  (void)loop;
  (void)revents;
  slog_at(LOG_ERROR, "serving processes still running: killing them");
  signal_kids(sp, -1, SIGKILL);
  sp->status = 1;
}

/* SIGTERM or SIGINT: new clients are refused at once, the serving processes drain (--grace); a
   second signal tells them to stop at once, unless it came within STOP_TOGETHER of the first
   (a signal to the supervisor and then to its group, or the other way round: one stop). */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents) {
  struct super *sp = w->signum == SIGTERM
                         ? (struct super *)((char *)w - offsetof(struct super, sig_term))
                         : (struct super *)((char *)w - offsetof(struct super, sig_int));
  struct server *s = sp->s;
  (void)revents;
  if (sp->stopping >= 2) return;
  if (sp->stopping == 1 && clock_now() - sp->stop_time < STOP_TOGETHER) {
    slog("%s %.0f ms after the first stop signal: the same graceful stop",
         w->signum == SIGINT ? "SIGINT" : "SIGTERM", (clock_now() - sp->stop_time) * 1000);
    return;
  }
  if (sp->stopping == 0) sp->stop_time = clock_now();
  sp->stopping++;
  sp->upgrade_waits = 0;
  for (int i = 0; i < sp->nslots; i++)
    sp->kids[i].draining = 1;
  ev_timer_stop(loop, &sp->respawn);
  ev_timer_stop(loop, &sp->stop_deadline);
  if (sp->stopping == 1) {
    listener_unlink(&s->lst);
    listener_close(&s->lst); /* the serving processes close theirs as they stop accepting */
    ev_timer_set(&sp->stop_deadline, s->cfg.grace + 10, 0.);
  } else {
    slog("second stop signal: stopping now");
    ev_timer_set(&sp->stop_deadline, 2., 0.);
  }
  ev_timer_start(loop, &sp->stop_deadline);
  signal_kids(sp, -1, sp->stopping == 1 ? SIGTERM : SIG_STOP_NOW);
  int alive = 0;
  for (int i = 0; i < sp->nslots; i++)
    alive += sp->kids[i].pid > 0;
  if (alive == 0) ev_break(loop, EVBREAK_ALL);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents) {
  struct super *sp = (struct super *)((char *)w - offsetof(struct super, sig_hup));
  (void)loop;
  (void)revents;
  if (sp->stopping) return;
  slog("reloading %s", sp->s->cfg.app);
  signal_kids(sp, -1, SIGHUP);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents) {
  struct super *sp = (struct super *)((char *)w - offsetof(struct super, sig_usr1));
  (void)loop;
  (void)revents;
  log_reopen(sp->s->log);
  signal_kids(sp, -1, SIGUSR1);
}

/* SIGUSR2: the program file starts anew as new serving processes; once they serve, the old ones
   drain. While the old ones of the last upgrade still drain (their slots taken), it waits for
   them (at most their --grace); while new ones start, or the program stops, it is refused. */
static void on_usr2(struct ev_loop *loop, ev_signal *w, int revents) {
  struct super *sp = (struct super *)((char *)w - offsetof(struct super, sig_usr2));
  (void)loop;
  (void)revents;
  if (sp->stopping || sp->upgrading || sp->startup) {
    slog_at(LOG_WARN, "upgrade: not now (%s)",
            sp->stopping    ? "stopping"
            : sp->upgrading ? "another is under way: its new serving processes are starting"
                            : "the first serving processes are starting");
    return;
  }
  if (free_slots(sp) < sp->nprocs) {
    slog("upgrade: %s for the old serving processes of the last upgrade to finish draining",
         sp->upgrade_waits ? "already waiting" : "waiting");
    sp->upgrade_waits = 1;
    return;
  }
  upgrade(sp);
}

static void start_signals(struct super *sp) {
  ev_signal_init(&sp->sig_term, on_stop, SIGTERM);
  ev_signal_init(&sp->sig_int, on_stop, SIGINT);
  ev_signal_init(&sp->sig_hup, on_hup, SIGHUP);
  ev_signal_init(&sp->sig_usr1, on_usr1, SIGUSR1);
  ev_signal_init(&sp->sig_usr2, on_usr2, SIGUSR2);
  ev_signal_init(&sp->sig_chld, on_chld, SIGCHLD);
  ev_signal *all[] = {&sp->sig_term, &sp->sig_int,  &sp->sig_hup,
                      &sp->sig_usr1, &sp->sig_usr2, &sp->sig_chld};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ev_signal_start(sp->loop, all[i]);
  ev_init(&sp->respawn, on_respawn);
  ev_init(&sp->stop_deadline, on_deadline);
}

static void stop_signals(struct super *sp) {
  ev_signal *all[] = {&sp->sig_term, &sp->sig_int,  &sp->sig_hup,
                      &sp->sig_usr1, &sp->sig_usr2, &sp->sig_chld};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ev_signal_stop(sp->loop, all[i]);
  ev_timer_stop(sp->loop, &sp->respawn);
  ev_timer_stop(sp->loop, &sp->stop_deadline);
}

/* Loads the app as a worker would (this program with --check), so a broken app stops the program
   before any socket is made. What the check printed is shown only if it failed (the serving
   processes print it again when they load the app). */
static int check_app(struct super *sp) {
  char **argv = calloc((size_t)sp->argc + 2, sizeof *argv);
  int out[2];
  if (argv == NULL || pipe2(out, O_CLOEXEC) < 0) {
    free(argv);
    return -1;
  }
  argv[0] = sp->exe;
  for (int i = 1; i < sp->argc; i++)
    argv[i] = sp->argv[i];
  argv[sp->argc] = "--check=quiet";
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    execv(sp->exe, argv);
    _exit(127);
  }
  free(argv);
  close(out[1]);
  char *said = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      char *p = realloc(said, cap = cap ? cap * 2 : 4096);
      if (p == NULL) break;
      said = p;
    }
    ssize_t n = read(out[0], said + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(out[0]);
  int status = 0;
  int ok =
      pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!ok && said && write(2, said, len) < 0) ok = 0;
  free(said);
  return ok ? 0 : -1;
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int super_run(struct server *s, int argc, char **argv, char *err, size_t errlen) {
  static struct super sup; /* one per program */
  struct super *sp = &sup;
  memset(sp, 0, sizeof *sp);
  sp->s = s;
  sp->argc = argc;
  sp->argv = argv;
  sp->stats_fd = -1;
  sp->nprocs = s->cfg.processes;
  sp->nworkers = s->cfg.workers > 0 ? s->cfg.workers : online_cpus();
  sp->nslots = 2 * sp->nprocs;
  sp->generation = 1;
  sp->startup = 1;
  for (int i = 0; i < sp->nslots; i++)
    sp->kids[i].ready_fd = -1;
  ssize_t n = readlink("/proc/self/exe", sp->exe, sizeof sp->exe - 1);
  if (n <= 0) {
    snprintf(err, errlen, "cannot find the program's file: %s", strerror(errno));
    return 1;
  }
  sp->exe[n] = '\0';
  server_quiet_sigpipe();
  if (check_app(sp) < 0) return 1; /* the check printed why */
  s->lst.fd = s->web.lst.fd = -1;
  s->log = log_start(s->cfg.log_file, NULL, s->cfg.log_level, err, errlen);
  if (s->log == NULL) return 1;
  int rc = 1;
  sp->loop = ev_loop_new(EVFLAG_AUTO);
  if (sp->loop == NULL) {
    snprintf(err, errlen, "cannot create the main event loop");
    goto done;
  }
  if (listen_open(s, err, errlen) < 0) goto done;
  sp->t = stats_table_new(sp->nslots, sp->nworkers, &sp->stats_fd);
  if (sp->t == NULL) {
    snprintf(err, errlen, "cannot make the figures' table: %s", strerror(errno));
    goto done;
  }
  log_count_reopen_failures(s->log, &sp->t->log_reopen_failures);
  if (stats_web_start(&s->web, s->cfg.stats, sp->loop, sp->t, err, errlen) < 0) goto done;
  if (listen_write_pid(s, err, errlen) < 0) goto done;
  start_signals(sp);
  fill(sp);
  ev_run(sp->loop, 0);
  stop_signals(sp);
  rc = sp->status;
  err[0] = '\0';
done:
  signal_kids(sp, -1, SIGKILL);
  for (int i = 0; i < sp->nslots; i++)
    if (sp->kids[i].pid > 0) waitpid(sp->kids[i].pid, NULL, 0);
  if (sp->loop) {
    stats_web_stop(&s->web);
    for (int i = 0; i < sp->nslots; i++)
      close_ready(&sp->kids[i]);
    ev_loop_destroy(sp->loop);
  }
  listen_close(s);
  log_count_reopen_failures(s->log, NULL);
  stats_table_unmap(sp->t, sp->nslots, sp->nworkers);
  if (sp->stats_fd >= 0) close(sp->stats_fd);
  log_stop(s->log);
  s->log = NULL;
  return rc;
}
