/* server.h: the server: its options, listener, workers, signals and shared dictionaries. No Lua
   here (a caller's function handler is held as an opaque state). */
#ifndef SCGI_SERVER_H
#define SCGI_SERVER_H

#include <signal.h>

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "log.h"
#include "stats.h"

#define SCGI_VERSION "0.2.0"
#define SCGI_MAX_DICTS 16

struct worker;
struct shdict;
struct resolver;
struct lua_State;
struct rt_bindings;

struct server {
  struct scgi_config cfg;
  struct listener lst;
  int nworkers;
  struct worker *workers;
  struct ev_loop *loop; /* the main thread's: signals, grace, worker exits */
  ev_signal sig_term, sig_int, sig_hup, sig_usr1, sig_usr2, sig_now;
  ev_timer grace_timer, hard_stop; /* the grace period; the second signal's deadline */
  ev_async done;
  ev_io accept_w;          /* --accept handoff: the acceptor */
  ev_timer accept_retry;   /* EMFILE: paused accepting */
  int ncpu, emfile_logged; /* online CPUs (the acceptor prefers that many workers) */
  int naccepting;          /* workers that watch the listener themselves */
  ev_async accept_toggle;  /* direct: the watchdog turns the acceptor on or off */
  atomic_int overflow;     /* direct: every direct worker is busy in Lua: the acceptor is on */
  atomic_int watch_direct; /* direct with more workers than CPUs: the watchdog looks */
  atomic_int taken_away;   /* stopping: the listener is out of every worker's set */
  uint64_t spurious;
  atomic_int running;   /* workers whose loop has not ended */
  atomic_int listen_fd; /* lst.fd until the last worker stops accepting and closes it */
  atomic_int stopped_accepting;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int ready, failed, go; /* start-up handshake: states built, then the listener is there */
  int stopping;
  double stop_time;          /* the first stop signal (monotonic) */
  double started;            /* start time (monotonic), for the uptime */
  struct stats_web web;      /* --stats (not in a serving process: its supervisor has it) */
  struct stats_table *stats; /* the figures; shared with the supervisor in a serving process */
  int stats_slot;            /* this process's slot in it */
  int stats_shape[2];        /* serving: its processes and workers, as attached (for unmapping) */
  int serving;               /* a serving process under the supervisor */
  long pid;                  /* this process (for the JSON access log) */
  int ready_fd;              /* serving: written once the workers serve, then closed */
  int stats_fd;              /* serving: the supervisor's table */
  int generation;
  int pid_fd, pid_state; /* --pid-file: opened at binding, written once all is bound (listen.c) */
  struct logger *log;
  ev_timer watch_timer; /* --reload-on-change */
  pthread_mutex_t files_mu;
  char **files; /* the app file and every Lua module the workers loaded, with their mtimes */
  double *mtimes;
  int nfiles, files_cap;
  struct shdict *dicts[SCGI_MAX_DICTS]; /* --shared */
  int ndicts;
  struct lua_State *fn_L; /* a caller's function handler: its state and registry ref */
  int fn_ref;
  const char *lua_path, *lua_cpath;   /* package.path and cpath for worker states, or NULL */
  const char *lua_path_prefix;        /* put before package.path, or NULL */
  const struct rt_bindings *bindings; /* the Lua side the workers run (lscgi.c) */
  struct resolver *resolver;          /* name lookups off the workers */
  pthread_t guard_thread;             /* the CPU guard's watchdog */
  atomic_int guard_stop;
  int guard_running;
};

/* Runs the server until it is stopped; 0, or 1 with a message in err. */
int server_run(struct server *s, char *err, size_t errlen);
/* --check: loads the app as a worker would (after dropping privileges, as a worker would), binds
   nothing; 0, or 1 with a message in err. */
int server_check(struct server *s, char *err, size_t errlen);
/* --reload-on-change watches path too (the app file, and each Lua module a worker loads). */
void server_watch(struct server *s, const char *path);

/* super.c: the supervising process: binds the listener, runs and replaces the serving
   processes (this program again, with --serving); returns the exit status (0, or 1 with err). */
int super_run(struct server *s, int argc, char **argv, char *err, size_t errlen);

/* listen.c */
int listen_open(struct server *s, char *err, size_t errlen);
/* Writes the pid into the pid file listen_open opened, once everything is bound. */
int listen_write_pid(struct server *s, char *err, size_t errlen);
void listen_close(struct server *s);
/* --check: opens the log files and the pid file as the start would, and leaves them as they were;
   0, or -1 with the start's message in err. */
int listen_check_files(const struct scgi_config *cfg, char *err, size_t errlen);

/* priv.c */
int priv_chown_socket(struct listener *l, const char *owner, char *err, size_t errlen);
int priv_drop(const struct scgi_config *cfg, char *err, size_t errlen);

/* A serving process: the supervisor's "stop at once" (its second stop signal). SIGTERM and SIGINT
   only ever drain a serving process, so one that gets a stop signal twice (from a signal to the
   whole process group, and forwarded by the supervisor) still drains. */
#define SIG_STOP_NOW (SIGRTMIN + 2)
/* Stop signals (SIGTERM, SIGINT, any mix) this close to the first are the same graceful stop (a
   signal to the process and then to its group, Ctrl-C and a script's kill); one later stops at
   once. */
#define STOP_TOGETHER 0.25
/* The signals a serving process handles; blocked from its fork until its handlers are set. */
void server_serving_signals(sigset_t *set);
/* SIGPIPE: a handler that does nothing rather than SIG_IGN, so the programs handlers run get
   SIGPIPE's default action back at exec, while a write to a closed socket here says EPIPE. */
void server_quiet_sigpipe(void);

#endif
