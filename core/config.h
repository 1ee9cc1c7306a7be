/* config.h: the server's options: one table (config.c) gives each its kind, range, default and
   help line, and drives parsing (program and module) and --help. */
#ifndef SCGI_CONFIG_H
#define SCGI_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_SHARED 16

enum accept_mode { ACCEPT_DIRECT, ACCEPT_HANDOFF, ACCEPT_SHARED };
enum gc_mode { GC_INCREMENTAL, GC_GENERATIONAL };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

struct scgi_config {
  const char *app;          /* path of the app file, or NULL for a function handler */
  const char *socket;       /* address string; NULL: the default path */
  int socket_mode;          /* permissions of a unix socket, or -1 to leave them to the umask */
  const char *socket_owner; /* USER[:GROUP] of the unix socket */
  const char *user, *group; /* drop privileges to these after binding */
  int backlog;              /* listen queue; 0: the kernel's maximum (somaxconn) */
  int workers;              /* worker threads per serving process; 0: online CPUs */
  int processes;            /* serving processes under the supervisor */
  int no_master;            /* one process, no supervisor */
  int accept;               /* enum accept_mode: how workers get their clients */
  size_t max_header_size;
  uint64_t max_body_size; /* 0: no limit */
  int max_connections;    /* per worker */
  double timeout;         /* seconds of inactivity while reading or writing */
  double request_timeout; /* wall-clock budget of one request, accept to close */
  double cpu_limit;       /* seconds a handler may run Lua without yielding; 0: no limit */
  double memory_limit;    /* MiB per worker Lua state; 0: none */
  int gc;                 /* enum gc_mode */
  int max_timers;         /* pending scgi.timer/every per worker */
  double timer_timeout;   /* budget of one timer's run; 0: none */
  const char *ca_file;    /* trusted certificates for TLS (PEM); NULL: the system's */
  double grace;           /* seconds in-flight requests get after SIGTERM */
  double load_timeout;    /* seconds the app file may take to load (start, reload, recycle) */
  int reload_on_change;   /* reload when the app file or a Lua module it loaded changes */
  int max_requests;       /* recycle a worker's state after about this many requests; 0: never */
  double max_lua_memory;  /* recycle a worker's state over this many MiB after a GC; 0: never */
  double slow_log;        /* log a request still running after this many seconds; 0: off */
  const char *access_log; /* path, "-" for stdout, NULL for none */
  int access_log_format;  /* enum log_format */
  const char *log_file;   /* NULL: stderr */
  int log_level;          /* LOG_ERROR .. LOG_DEBUG */
  const char *stats;      /* address of the stats endpoint, or NULL */
  const char *pid_file;
  int wsapi;   /* the app file returns a WSAPI application */
  int nshared; /* --shared NAME:SIZE, repeatable */
  char shared_name[CONFIG_MAX_SHARED][64];
  size_t shared_size[CONFIG_MAX_SHARED];
};

/* Fills cfg with the defaults. */
void config_init(struct scgi_config *cfg);

/* Sets option NAME (without dashes, '-' or '_' between words) from VALUE; returns 0, or -1 with
   a one-line message in err. Strings are stored by pointer: VALUE must outlive cfg. */
int config_set(struct scgi_config *cfg, const char *name, const char *value, char *err,
               size_t errlen);

/* 1 if NAME is an option that takes a value, 2 for a flag that takes none, 3 for one of the
   program's own (--status, --check: main.c handles them), 0 if unknown. */
int config_known(const char *name);

/* Checks what needs more than one value's syntax; -1 with a one-line message in err. */
int config_check(const struct scgi_config *cfg, char *err, size_t errlen);

/* priv.c: whether the users and groups --user, --group and --socket-owner name exist (names or
   numbers); -1 with "invalid value for --OPTION" in err. config_check calls it. */
int priv_check_names(const struct scgi_config *cfg, char *err, size_t errlen);

/* The default socket path, /tmp/<uid>/scgi, written into buf. */
const char *config_default_socket(char *buf, size_t len);

/* --help: one entry per option, from the table. */
void config_print_help(FILE *f);

#endif
