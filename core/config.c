/* config.c: the option table (kind, range, default, help line of each option), the defaults,
   parsing values for the program and the module, and --help. */
#include "config.h"
#include "addr.h"
#include "shdict.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum kind {
  K_STRING,  /* a non-empty string, kept by pointer */
  K_INT,     /* an integer in [min, max] */
  K_SIZE,    /* bytes, with a K, M or G suffix */
  K_SECONDS, /* a number of seconds, fractions allowed */
  K_NUMBER,  /* a number */
  K_MODE,    /* an octal mode */
  K_FLAG,    /* takes no value on the command line; true/false from the module */
  K_CHOICE,  /* one of the names in choices: its index */
  K_SHARED,  /* NAME:SIZE, repeatable */
  K_PROGRAM  /* the program's own: --status, --check, --help, --version */
};

struct option_def {
  const char *name;
  enum kind kind;
  size_t offset, size; /* the field in struct scgi_config */
  double min, max;
  const char *const *choices;
  const char *arg;  /* what the value is, for --help */
  const char *dflt; /* the default, for --help; NULL: none shown */
  const char *help;
};

static const char *const accept_modes[] = {"direct", "handoff", "shared", NULL};
static const char *const gc_modes[] = {"incremental", "generational", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

#define F(field) offsetof(struct scgi_config, field), sizeof(((struct scgi_config *)0)->field)
#define NOFIELD 0, 0
static const struct option_def options[] = {
    {"socket", K_STRING, F(socket), 0, 0, NULL, "ADDR", "/tmp/<uid>/scgi",
     "/path or unix:/path, HOST:PORT (port 0: a free one), [V6ADDR]:PORT, fd:N (inherited), or "
     "systemd"},
    {"socket-mode", K_MODE, F(socket_mode), 0, 07777, NULL, "MODE", "from the umask",
     "octal permissions of the unix socket, e.g. 0660"},
    {"socket-owner", K_STRING, F(socket_owner), 0, 0, NULL, "USER[:GROUP]", NULL,
     "owner of the unix socket (started as root)"},
    {"user", K_STRING, F(user), 0, 0, NULL, "USER", NULL,
     "started as root: drop to this user after binding"},
    {"group", K_STRING, F(group), 0, 0, NULL, "GROUP", NULL,
     "started as root: drop to this group after binding"},
    {"backlog", K_INT, F(backlog), 0, 1 << 20, NULL, "N", "the kernel's maximum (somaxconn)",
     "length of the listen queue"},
    {"workers", K_INT, F(workers), 1, 1024, NULL, "N", "online CPUs",
     "worker threads (per serving process), each with its own event loop and Lua state"},
    {"processes", K_INT, F(processes), 1, 256, NULL, "N", "1",
     "serving processes under the supervisor; a crash costs one process's requests in flight"},
    {"no-master", K_FLAG, F(no_master), 0, 1, NULL, NULL, NULL,
     "no supervising process: serve in this process (a crash ends the program)"},
    {"accept", K_CHOICE, F(accept), 0, 0, accept_modes, "MODE", "direct",
     "direct: as many workers as CPUs wait for clients themselves, one woken per client, and the "
     "others get clients handed on while those all run Lua; handoff: one thread accepts and hands "
     "each client on; shared: every idle worker wakes for each client (docs/accept.md)"},
    {"max-header-size", K_SIZE, F(max_header_size), 64, 16777216, NULL, "SIZE", "64K",
     "largest SCGI header block; over it: 431"},
    {"max-body-size", K_SIZE, F(max_body_size), 0, 1e18, NULL, "SIZE", "16M",
     "largest request body, 0 for no limit; over it: 413"},
    {"max-connections", K_INT, F(max_connections), 1, 1000000, NULL, "N", "1024",
     "open connections per worker; over it: 503"},
    {"timeout", K_SECONDS, F(timeout), 0.001, 1e9, NULL, "SECONDS", "60",
     "inactivity while reading the request or writing the response"},
    {"request-timeout", K_SECONDS, F(request_timeout), 0.001, 1e9, NULL, "SECONDS", "60",
     "wall-clock budget of one request, from accept to close; then 504"},
    {"cpu-limit", K_SECONDS, F(cpu_limit), 0, 1e9, NULL, "SECONDS", "10",
     "time a handler may run Lua without yielding; then it is stopped (500); 0: no limit"},
    {"memory-limit", K_NUMBER, F(memory_limit), 0, 1e9, NULL, "MB", "0 (none)",
     "Lua memory per worker state; an allocation over it fails in the request that asked (500)"},
    {"gc", K_CHOICE, F(gc), 0, 0, gc_modes, "MODE", "incremental",
     "the worker states' garbage collector: incremental or generational"},
    {"max-timers", K_INT, F(max_timers), 0, 1000000, NULL, "N", "1024",
     "pending scgi.timer and scgi.every timers per worker"},
    {"timer-timeout", K_SECONDS, F(timer_timeout), 0, 1e9, NULL, "SECONDS", "60",
     "budget of one run of a timer's function; 0: none"},
    {"ca-file", K_STRING, F(ca_file), 0, 0, NULL, "PATH", "the system's",
     "trusted certificates (PEM) for verifying TLS peers"},
    {"grace", K_SECONDS, F(grace), 0, 1e9, NULL, "SECONDS", "30",
     "how long in-flight requests may run after SIGTERM"},
    {"reload-on-change", K_FLAG, F(reload_on_change), 0, 1, NULL, NULL, NULL,
     "reload when the app file or a Lua module it loaded changes"},
    {"load-timeout", K_SECONDS, F(load_timeout), 0.001, 1e6, NULL, "SECONDS", "10",
     "time the app file may take to load (at start, reload, upgrade, recycle); past it the load "
     "fails and the running app serves on"},
    {"max-requests", K_INT, F(max_requests), 0, 2000000000, NULL, "N", "0 (never)",
     "build a worker a fresh Lua state after about N requests (10% jitter)"},
    {"max-lua-memory", K_NUMBER, F(max_lua_memory), 0, 1e9, NULL, "MB", "0 (never)",
     "build a worker a fresh Lua state when its heap stays over MB after a collection"},
    {"slow-log", K_SECONDS, F(slow_log), 0, 1e9, NULL, "SECONDS", "0 (off)",
     "log a request still running after SECONDS, with its Lua traceback"},
    {"access-log", K_STRING, F(access_log), 0, 0, NULL, "PATH", "none",
     "one line per request (-: stdout)"},
    {"access-log-format", K_CHOICE, F(access_log_format), 0, 0, log_formats, "FORMAT", "text",
     "text or json (one JSON object per line)"},
    {"log-file", K_STRING, F(log_file), 0, 0, NULL, "PATH", "stderr", "the error log"},
    {"log-level", K_CHOICE, F(log_level), 0, 0, log_levels, "LEVEL", "info",
     "error, warn, info or debug"},
    {"stats", K_STRING, F(stats), 0, 0, NULL, "ADDR", "none",
     "the server's figures over HTTP: JSON at /, Prometheus at /metrics (a unix path or a "
     "loopback HOST:PORT)"},
    {"pid-file", K_STRING, F(pid_file), 0, 0, NULL, "PATH", "none",
     "written after binding, removed on exit"},
    {"shared", K_SHARED, F(nshared), 0, 16, NULL, "NAME:SIZE", "none",
     "a dictionary shared by all workers, scgi.shared.NAME (repeatable)"},
    {"wsapi", K_FLAG, F(wsapi), 0, 1, NULL, NULL, NULL, "the app file returns a WSAPI application"},
    {"check", K_PROGRAM, NOFIELD, 0, 0, NULL, NULL, NULL,
     "load the app as a worker would, bind nothing, and exit: 0, or 1 naming the file and line"},
    {"status", K_PROGRAM, NOFIELD, 0, 0, NULL, "ADDR", NULL,
     "print the figures of the server whose --stats is ADDR, and exit"},
    {"help", K_PROGRAM, NOFIELD, 0, 0, NULL, NULL, NULL, "this text"},
    {"version", K_PROGRAM, NOFIELD, 0, 0, NULL, NULL, NULL, "the version"},
};
#define NOPTIONS (sizeof options / sizeof options[0])

void config_init(struct scgi_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->socket_mode = -1;
  cfg->processes = 1;
  cfg->max_header_size = 64 * 1024;
  cfg->max_body_size = 16 * 1024 * 1024;
  cfg->timeout = 60;
  cfg->max_connections = 1024;
  cfg->grace = 30;
  cfg->request_timeout = 60;
  cfg->cpu_limit = 10;
  cfg->load_timeout = 10;
  cfg->max_timers = 1024;
  cfg->timer_timeout = 60;
  cfg->log_level = 2;
}

static const struct option_def *find(const char *name) {
  char canon[64];
  size_t n = strlen(name);
  if (n >= sizeof canon) return NULL;
  for (size_t i = 0; i <= n; i++)
    canon[i] = name[i] == '_' ? '-' : name[i];
  for (size_t i = 0; i < NOPTIONS; i++)
    if (strcmp(options[i].name, canon) == 0) return &options[i];
  return NULL;
}

int config_known(const char *name) {
  const struct option_def *o = find(name);
  return o == NULL ? 0 : o->kind == K_PROGRAM ? 3 : o->kind == K_FLAG ? 2 : 1;
}

static int parse_number(const struct option_def *o, const char *v, double *out) {
  char *end;
  errno = 0;
  if (o->kind == K_MODE)
    *out = (double)strtol(v, &end, 8);
  else if (o->kind == K_INT)
    *out = (double)strtoll(v, &end, 10);
  else
    *out = strtod(v, &end);
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

static void expected(const struct option_def *o, char *buf, size_t len) {
  switch (o->kind) {
  case K_INT: snprintf(buf, len, "an integer"); break;
  case K_SIZE: snprintf(buf, len, "a size in bytes, with an optional K, M or G suffix"); break;
  case K_SECONDS: snprintf(buf, len, "a number of seconds"); break;
  case K_NUMBER: snprintf(buf, len, "a number"); break;
  case K_FLAG: snprintf(buf, len, "true or false"); break;
  case K_MODE: snprintf(buf, len, "an octal mode such as 0660"); break;
  case K_SHARED:
    snprintf(buf, len, "NAME:SIZE, a name of letters, digits and _ and a size of at least 4K");
    break;
  case K_CHOICE: {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; o->choices[i] && n < len; i++) {
      const char *sep = i == 0 ? "" : o->choices[i + 1] ? ", " : " or ";
      n += (size_t)snprintf(buf + n, len - n, "%s%s", sep, o->choices[i]);
    }
    break;
  }
  default: snprintf(buf, len, "a string"); break;
  }
}

static int bad(const struct option_def *o, const char *value, char *err, size_t errlen) {
  char what[160];
  expected(o, what, sizeof what);
  snprintf(err, errlen, "invalid value for --%s: '%s' (expected %s)", o->name, value, what);
  return -1;
}

static int set_shared(struct scgi_config *cfg, const char *value, char *err, size_t errlen) {
  size_t size;
  char name[64];
  if (shdict_parse(value, name, sizeof name, &size) < 0) return -2;
  for (int i = 0; i < cfg->nshared; i++)
    if (strcmp(cfg->shared_name[i], name) == 0) {
      snprintf(err, errlen, "--shared %s: the dictionary %s is declared twice", value, name);
      return -1;
    }
  if (cfg->nshared == CONFIG_MAX_SHARED) {
    snprintf(err, errlen, "--shared %s: at most %d shared dictionaries", value, CONFIG_MAX_SHARED);
    return -1;
  }
  snprintf(cfg->shared_name[cfg->nshared], sizeof cfg->shared_name[0], "%s", name);
  cfg->shared_size[cfg->nshared++] = size;
  return 0;
}

/* Stores an integral value in a field of its size. */
static void store_int(void *field, size_t size, double d) {
  if (size == sizeof(int))
    *(int *)field = (int)d;
  else if (size == sizeof(uint64_t))
    *(uint64_t *)field = (uint64_t)d;
}

int config_set(struct scgi_config *cfg, const char *name, const char *value, char *err,
               size_t errlen) {
  const struct option_def *o = find(name);
  double d;
  if (o == NULL || o->kind == K_PROGRAM) {
    snprintf(err, errlen, "unknown option '%s'", name);
    return -1;
  }
  void *field = (char *)cfg + o->offset;
  switch (o->kind) {
  case K_STRING:
    if (*value == '\0') return bad(o, value, err, errlen);
    *(const char **)field = value;
    return 0;
  case K_FLAG: {
    int on = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0;
    if (!on && strcmp(value, "0") != 0 && strcmp(value, "false") != 0 && strcmp(value, "no") != 0)
      return bad(o, value, err, errlen);
    *(int *)field = on;
    return 0;
  }
  case K_CHOICE:
    for (int i = 0; o->choices[i]; i++)
      if (strcmp(value, o->choices[i]) == 0) {
        *(int *)field = i;
        return 0;
      }
    return bad(o, value, err, errlen);
  case K_SHARED: {
    int rc = set_shared(cfg, value, err, errlen);
    return rc == -2 ? bad(o, value, err, errlen) : rc;
  }
  default: break;
  }
  if (parse_number(o, value, &d) < 0) return bad(o, value, err, errlen);
  if (d < o->min || d > o->max) {
    char what[160];
    expected(o, what, sizeof what);
    snprintf(err, errlen, "invalid value for --%s: '%s' (expected %s from %g to %g)", o->name,
             value, what, o->min, o->max);
    return -1;
  }
  if (o->kind == K_SECONDS || o->kind == K_NUMBER)
    *(double *)field = d;
  else
    store_int(field, o->size, d);
  return 0;
}

int config_check(const struct scgi_config *cfg, char *err, size_t errlen) {
  const char *a = cfg->stats, *names[] = {"socket", "stats"};
  const char *addrs[] = {cfg->socket && strcmp(cfg->socket, "systemd") ? cfg->socket : NULL, a};
  char why[128];
  for (int i = 0; i < 2; i++)
    if (addrs[i] && addr_check(addrs[i], why, sizeof why) < 0) {
      snprintf(err, errlen, "invalid value for --%s: '%s' (%s)", names[i], addrs[i], why);
      return -1;
    }
  if (cfg->group && !cfg->user) {
    snprintf(err, errlen,
             "--group needs --user: alone it would change the group and keep the user (uid 0 "
             "when started as root); give --user too");
    return -1;
  }
  if (priv_check_names(cfg, err, errlen) < 0) return -1;
  if (a && strncmp(a, "unix:", 5) != 0 && a[0] != '/' && a[0] != '.' &&
      strncmp(a, "127.", 4) != 0 && strncmp(a, "[::1]:", 6) != 0 &&
      strncmp(a, "localhost:", 10) != 0) {
    snprintf(err, errlen,
             "invalid value for --stats: '%s' (the endpoint has no authentication: give it a "
             "unix path or a loopback address, 127.0.0.1:PORT or [::1]:PORT)",
             a);
    return -1;
  }
  FILE *ca = cfg->ca_file ? fopen(cfg->ca_file, "r") : NULL;
  struct stat st;
  if (cfg->ca_file && (ca == NULL || fstat(fileno(ca), &st) < 0 || !S_ISREG(st.st_mode))) {
    snprintf(err, errlen, "invalid value for --ca-file: '%s' (cannot read it: %s)", cfg->ca_file,
             ca ? "not a file" : strerror(errno));
    if (ca) fclose(ca);
    return -1;
  }
  if (ca) fclose(ca);
  return 0;
}

const char *config_default_socket(char *buf, size_t len) {
  snprintf(buf, len, "/tmp/%lu/scgi", (unsigned long)getuid());
  return buf;
}

/* Writes text from column 26, wrapped at 100 columns with the same indent. */
static void wrap(FILE *f, const char *text) {
  int col = 26, first = 1;
  while (*text) {
    int w = (int)strcspn(text, " ");
    if (!first && col + 1 + w > 100) {
      fprintf(f, "\n%26s", "");
      col = 26;
      first = 1;
    }
    if (!first) col += fprintf(f, " ");
    col += fprintf(f, "%.*s", w, text);
    first = 0;
    text += w;
    while (*text == ' ')
      text++;
  }
  fputc('\n', f);
}

void config_print_help(FILE *f) {
  for (size_t i = 0; i < NOPTIONS; i++) {
    const struct option_def *o = &options[i];
    char head[64], text[512];
    int n =
        snprintf(head, sizeof head, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    snprintf(text, sizeof text, "%s%s%s%s", o->help, o->dflt ? " (default: " : "",
             o->dflt ? o->dflt : "", o->dflt ? ")" : "");
    if (n < 25)
      fprintf(f, "%-26s", head);
    else
      fprintf(f, "%s\n%26s", head, "");
    wrap(f, text);
  }
  fprintf(f, "SIZE takes a K, M or G suffix (powers of 1024).\n");
}
