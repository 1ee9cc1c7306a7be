/* config.c: option table, defaults and value parsing shared by the program and the module. */
#include "config.h"
#include "shdict.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum kind { K_STRING, K_INT, K_SIZE, K_SECONDS, K_MODE, K_NUMBER, K_FLAG, K_LEVEL, K_SHARED };

struct option_def {
  const char *name;
  enum kind kind;
  size_t offset;
  double min, max;
};

#define OPT(n, k, field, lo, hi)                                                                   \
  { n, k, offsetof(struct scgi_config, field), lo, hi }
static const struct option_def options[] = {
    OPT("socket", K_STRING, socket, 0, 0),
    OPT("socket-mode", K_MODE, socket_mode, 0, 07777),
    OPT("workers", K_INT, workers, 1, 1024),
    OPT("max-header-size", K_SIZE, max_header_size, 64, 16777216),
    OPT("max-body-size", K_SIZE, max_body_size, 0, 1e18),
    OPT("timeout", K_SECONDS, timeout, 0.001, 1e9),
    OPT("max-connections", K_INT, max_connections, 1, 1000000),
    OPT("grace", K_SECONDS, grace, 0, 1e9),
    OPT("request-timeout", K_SECONDS, request_timeout, 0.001, 1e9),
    OPT("cpu-limit", K_SECONDS, cpu_limit, 0, 1e9),
    OPT("memory-limit", K_NUMBER, memory_limit, 0, 1e9),
    OPT("accept", K_STRING, accept, 0, 0),
    OPT("reload-on-change", K_FLAG, reload_on_change, 0, 1),
    OPT("socket-owner", K_STRING, socket_owner, 0, 0),
    OPT("user", K_STRING, user, 0, 0),
    OPT("group", K_STRING, group, 0, 0),
    OPT("access-log", K_STRING, access_log, 0, 0),
    OPT("log-file", K_STRING, log_file, 0, 0),
    OPT("log-level", K_LEVEL, log_level, 0, 3),
    OPT("stats", K_STRING, stats, 0, 0),
    OPT("pid-file", K_STRING, pid_file, 0, 0),
    OPT("wsapi", K_FLAG, wsapi, 0, 1),
    OPT("gc", K_STRING, gc, 0, 0),
    OPT("shared", K_SHARED, nshared, 0, 16),
};

const char config_help[] =
    "  --socket ADDR           /path, unix:/path, HOST:PORT, [V6]:PORT or fd:N\n"
    "                          (default: /tmp/<uid>/scgi)\n"
    "  --socket-mode MODE      octal permissions of a unix socket (default: from the umask)\n"
    "  --workers N             worker threads, one Lua state each (default: online CPUs)\n"
    "  --max-header-size SIZE  largest SCGI header block; over it: 431 (default: 64K)\n"
    "  --max-body-size SIZE    largest request body, 0 for none; over it: 413 (default: 16M)\n"
    "  --timeout SECONDS       inactivity while reading or writing a request (default: 60)\n"
    "  --max-connections N     open connections per worker; over it: 503 (default: 1024)\n"
    "  --grace SECONDS         time in-flight requests get after SIGTERM (default: 30)\n"
    "  --request-timeout SECONDS  budget of one request from accept to close; then 504\n"
    "                          (default: 60)\n"
    "  --cpu-limit SECONDS     time a handler may run Lua without yielding; then 500 or 504;\n"
    "                          0 turns the guard and the time slices off (default: 10)\n"
    "  --memory-limit MB       Lua memory per worker state, 0 for none (default: 0)\n"
    "  --accept MODE           shared: workers watch the listener; exclusive: through a nested\n"
    "                          EPOLLEXCLUSIVE set (docs/accept.md) (default: shared)\n"
    "  --reload-on-change      reload when the app file or a module it loaded changes\n"
    "  --socket-owner USER[:GROUP]  owner of the unix socket (when started as root)\n"
    "  --user USER, --group GROUP   drop privileges to these after binding (as root)\n"
    "  --access-log PATH       one line per request; - for stdout (default: none)\n"
    "  --log-file PATH         the error log (default: stderr)\n"
    "  --log-level LEVEL       error, warn, info or debug (default: info)\n"
    "  --stats ADDR            answer HTTP GET with the server's figures in JSON on ADDR\n"
    "                          (a unix path or a loopback HOST:PORT)\n"
    "  --pid-file PATH         written after binding, removed on exit\n"
    "  --wsapi                 APP.lua returns a WSAPI application, not a handler\n"
    "  --gc MODE               incremental or generational: the Lua GC of the worker states\n"
    "                          (default: incremental)\n"
    "  --shared NAME:SIZE      a dictionary shared by all workers, scgi.shared.NAME, of SIZE\n"
    "                          bytes (K, M, G suffixes; at least 4K); repeatable\n"
    "  --status ADDR           print the figures of the server whose --stats is ADDR, and exit\n"
    "  --help, --version\n"
    "SIZE takes a K, M or G suffix (powers of 1024).\n";

void config_init(struct scgi_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->socket_mode = -1;
  cfg->workers = 0;
  cfg->max_header_size = 64 * 1024;
  cfg->max_body_size = 16 * 1024 * 1024;
  cfg->timeout = 60;
  cfg->max_connections = 1024;
  cfg->grace = 30;
  cfg->request_timeout = 60;
  cfg->cpu_limit = 10;
  cfg->memory_limit = 0;
  cfg->log_level = 2;
}

static const struct option_def *find(const char *name) {
  char canon[64];
  size_t n = strlen(name);
  if (n >= sizeof canon) return NULL;
  for (size_t i = 0; i <= n; i++)
    canon[i] = name[i] == '_' ? '-' : name[i];
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (strcmp(options[i].name, canon) == 0) return &options[i];
  return NULL;
}

int config_known(const char *name) {
  const struct option_def *o = find(name);
  return o == NULL ? 0 : o->kind == K_FLAG ? 2 : 1;
}

static const char *const levels[] = {"error", "warn", "info", "debug"};

static int parse_number(const struct option_def *o, const char *v, double *out) {
  char *end;
  errno = 0;
  if (o->kind == K_MODE) {
    long m = strtol(v, &end, 8);
    *out = (double)m;
  } else if (o->kind == K_INT) {
    long long i = strtoll(v, &end, 10);
    *out = (double)i;
  } else {
    *out = strtod(v, &end);
  }
  if (end == v || errno != 0 || !isfinite(*out)) return -1;
  if (o->kind == K_SIZE && *end) {
    double mul = *end == 'K' || *end == 'k'   ? 1024.0
                 : *end == 'M' || *end == 'm' ? 1048576.0
                 : *end == 'G' || *end == 'g' ? 1073741824.0
                                              : 0;
    if (mul == 0) return -1;
    *out *= mul;
    end++;
    if (*end == 'B' || *end == 'b') end++;
  }
  if (*end) return -1;
  if (o->kind != K_SECONDS && o->kind != K_NUMBER && *out != floor(*out)) return -1;
  return 0;
}

static const char *expected(enum kind k) {
  switch (k) {
  case K_INT: return "an integer";
  case K_SIZE: return "a size in bytes, with an optional K, M or G suffix";
  case K_SECONDS: return "a number of seconds";
  case K_NUMBER: return "a number";
  case K_FLAG: return "true or false";
  case K_LEVEL: return "error, warn, info or debug";
  case K_SHARED: return "NAME:SIZE, a name of letters, digits and _ and a size of at least 4K";
  case K_MODE: return "an octal mode such as 0660";
  default: return "a string";
  }
}

int config_set(struct scgi_config *cfg, const char *name, const char *value, char *err,
               size_t errlen) {
  const struct option_def *o = find(name);
  double d;
  if (o == NULL) {
    snprintf(err, errlen, "unknown option '%s'", name);
    return -1;
  }
  char *field = (char *)cfg + o->offset;
  if (o->kind == K_STRING) {
    if (*value == '\0') goto bad;
    if (o->offset == offsetof(struct scgi_config, gc) && strcmp(value, "generational") != 0 &&
        strcmp(value, "incremental") != 0) {
      snprintf(err, errlen, "invalid value for --gc: '%s' (expected generational or incremental)",
               value);
      return -1;
    }
    if (o->offset == offsetof(struct scgi_config, accept) && strcmp(value, "exclusive") != 0 &&
        strcmp(value, "shared") != 0) {
      snprintf(err, errlen, "invalid value for --accept: '%s' (expected exclusive or shared)",
               value);
      return -1;
    }
    *(const char **)field = value;
    return 0;
  }
  if (o->kind == K_FLAG) {
    int on = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0;
    if (!on && strcmp(value, "0") != 0 && strcmp(value, "false") != 0 && strcmp(value, "no") != 0)
      goto bad;
    *(int *)field = on;
    return 0;
  }
  if (o->kind == K_SHARED) {
    size_t size;
    char dname[64];
    if (shdict_parse(value, dname, sizeof dname, &size) < 0) goto bad;
    for (int i = 0; i < cfg->nshared; i++)
      if (strcmp(cfg->shared_name[i], dname) == 0) {
        snprintf(err, errlen, "--shared %s: the dictionary %s is declared twice", value, dname);
        return -1;
      }
    if (cfg->nshared == 16) {
      snprintf(err, errlen, "--shared %s: at most 16 shared dictionaries", value);
      return -1;
    }
    snprintf(cfg->shared_name[cfg->nshared], sizeof cfg->shared_name[0], "%s", dname);
    cfg->shared_size[cfg->nshared++] = size;
    return 0;
  }
  if (o->kind == K_LEVEL) {
    for (int i = 0; i < 4; i++)
      if (strcmp(value, levels[i]) == 0) {
        *(int *)field = i;
        return 0;
      }
    goto bad;
  }
  if (parse_number(o, value, &d) < 0) goto bad;
  if (d < o->min || d > o->max) {
    snprintf(err, errlen, "invalid value for --%s: '%s' (expected %s from %g to %g)", o->name,
             value, expected(o->kind), o->min, o->max);
    return -1;
  }
  switch (o->kind) {
  case K_INT:
  case K_MODE: *(int *)field = (int)d; break;
  case K_SIZE:
    if (o->offset == offsetof(struct scgi_config, max_header_size))
      *(size_t *)field = (size_t)d;
    else
      *(uint64_t *)field = (uint64_t)d;
    break;
  case K_SECONDS:
  case K_NUMBER: *(double *)field = d; break;
  default: break;
  }
  return 0;
bad:
  snprintf(err, errlen, "invalid value for --%s: '%s' (expected %s)", o->name, value,
           expected(o->kind));
  return -1;
}

const char *config_default_socket(char *buf, size_t len) {
  snprintf(buf, len, "/tmp/%lu/scgi", (unsigned long)getuid());
  return buf;
}

/* Checks what needs more than one value's syntax; -1 with a one-line message in err. */
int config_check(const struct scgi_config *cfg, char *err, size_t errlen) {
  const char *a = cfg->stats;
  if (a && strncmp(a, "unix:", 5) != 0 && a[0] != '/' && a[0] != '.' &&
      strncmp(a, "127.", 4) != 0 && strncmp(a, "[::1]:", 6) != 0 &&
      strncmp(a, "localhost:", 10) != 0) {
    snprintf(err, errlen,
             "invalid value for --stats: '%s' (the endpoint has no authentication: give it a "
             "unix path or a loopback address, 127.0.0.1:PORT or [::1]:PORT)",
             a);
    return -1;
  }
  return 0;
}
