/* config.h: the server's options, their defaults, and parsing them from strings. */
#ifndef SCGI_CONFIG_H
#define SCGI_CONFIG_H

#include <stddef.h>
#include <stdint.h>

struct scgi_config {
  const char *app;    /* path of the app file, or NULL for a function handler */
  const char *socket; /* address string; NULL: the default path */
  int socket_mode;    /* permissions of a unix socket, or -1 to leave them to the umask */
  int workers;        /* worker threads; 0: online CPUs */
  size_t max_header_size;
  uint64_t max_body_size;   /* 0: no limit */
  double timeout;           /* seconds of inactivity while reading or writing */
  int max_connections;      /* per worker */
  double grace;             /* seconds in-flight requests get after SIGTERM */
  double request_timeout;   /* wall-clock budget of one request, accept to close */
  double cpu_limit;         /* seconds a handler may run Lua without yielding */
  double memory_limit;      /* MiB per worker Lua state; 0: none */
  const char *accept;       /* "exclusive" (default) or "shared": how workers wait for clients */
  int reload_on_change;     /* reload when the app file or a module it required changes */
  const char *socket_owner; /* USER[:GROUP] of the unix socket */
  const char *user, *group; /* drop privileges to these after binding */
  const char *access_log;   /* path, "-" for stdout, NULL for none */
  const char *log_file;     /* NULL: stderr */
  int log_level;            /* LOG_ERROR .. LOG_DEBUG */
  const char *stats;        /* address of the stats endpoint, or NULL */
  const char *pid_file;
  int wsapi;      /* the app file returns a WSAPI application */
  const char *gc; /* "generational" (default) or "incremental": the worker states' GC */
  int nshared;    /* --shared NAME:SIZE, repeatable */
  char shared_name[16][64];
  size_t shared_size[16];
};

/* Fills cfg with the defaults. */
void config_init(struct scgi_config *cfg);

/* Sets option NAME (without dashes, '-' or '_' between words) from VALUE; returns 0, or -1 with
   a one-line message in err. Strings are stored by pointer: VALUE must outlive cfg. */
int config_set(struct scgi_config *cfg, const char *name, const char *value, char *err,
               size_t errlen);

/* Returns 1 if NAME is an option that takes a value, 2 for a flag that takes none, 0 if unknown. */
int config_known(const char *name);

/* Checks what needs more than one value's syntax; -1 with a one-line message in err. */
int config_check(const struct scgi_config *cfg, char *err, size_t errlen);

/* The default socket path, /tmp/<uid>/scgi, written into buf. */
const char *config_default_socket(char *buf, size_t len);

/* The options' help text, for --help. */
extern const char config_help[];

#endif
