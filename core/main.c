/* main.c: the scgi-lua program: options, then the server. */
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "lbind.h"
#include "rt.h"
#include "server.h"
#include "stats.h"

#ifndef SCGI_LUADIR
#define SCGI_LUADIR "/usr/local/share/lua/5.4"
#endif

static const char usage[] = "usage: scgi-lua APP.lua [options]\n";

static int bad_usage(const char *msg) {
  fprintf(stderr, "scgi-lua: %s (see scgi-lua --help)\n", msg);
  return 2;
}

/* What goes before Lua's own package.path in worker states: the checkout's lua/, the tree the
   program is installed in, the install prefix. (Lua's own comes from LUA_PATH_5_4 or LUA_PATH,
   with ";;" expanded as lua5.4 does.) */
static char *module_path(void) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  size_t len = 6 * strlen(exe) + 2 * strlen(SCGI_LUADIR) + 200;
  char *path = malloc(len);
  if (path == NULL) return NULL;
  snprintf(path, len,
           "%s/lua/?.lua;%s/lua/?/init.lua;%s/../lua/?.lua;%s/../lua/?/init.lua;"
           "%s/../share/lua/5.4/?.lua;%s/../share/lua/5.4/?/init.lua;%s/?.lua;%s/?/init.lua",
           exe, exe, exe, exe, exe, exe, SCGI_LUADIR, SCGI_LUADIR);
  return path;
}

/* Parses argv into s->cfg; returns -1 to go on, or the exit status (2 for a bad usage). *check
   is set by --check. */
static int parse_args(struct server *s, int argc, char **argv, int *check) {
  char err[1024];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *value;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("%sRuns the Lua handler that APP.lua returns, over SCGI, on every core.\n\n", usage);
      config_print_help(stdout);
      return 0;
    }
    if (strcmp(a, "--version") == 0) {
      printf("scgi-lua %s (%s, libev %d.%d)\n", SCGI_VERSION, LUA_RELEASE, ev_version_major(),
             ev_version_minor());
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) {
      if (s->cfg.app) return bad_usage("more than one app file given");
      s->cfg.app = a;
      continue;
    }
    char name[64];
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    snprintf(name, sizeof name, "%.*s", (int)len, a + 2);
    int known = config_known(name);
    if (strcmp(name, "check") == 0) { /* --check=quiet (the supervisor's): no "ok" line */
      *check = eq && strcmp(eq + 1, "quiet") == 0 ? 2 : 1;
      continue;
    }
    if (strcmp(name, "serving") == 0) { /* from the supervisor: LISTEN,STATS,SLOT,READY,GEN */
      static char fd_addr[32];
      int lfd, ready;
      const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : "";
      if (sscanf(v, "%d,%d,%d,%d,%d", &lfd, &s->stats_fd, &s->stats_slot, &ready, &s->generation) !=
          5)
        return bad_usage("--serving is the supervisor's");
      snprintf(fd_addr, sizeof fd_addr, "fd:%d", lfd);
      s->cfg.socket = fd_addr;
      s->ready_fd = ready;
      s->serving = 1;
      continue;
    }
    if (strcmp(name, "status") == 0) {
      if (eq == NULL && i + 1 >= argc) return bad_usage("option --status needs a value");
      return stats_print(eq ? eq + 1 : argv[++i]);
    }
    if (!known || known == 3) {
      snprintf(err, sizeof err, "unknown option '%s'", a);
      return bad_usage(err);
    }
    if (known == 2) {
      value = eq ? eq + 1 : "1";
    } else if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      snprintf(err, sizeof err, "option --%s needs a value", name);
      return bad_usage(err);
    }
    if (config_set(&s->cfg, name, value, err, sizeof err) < 0) return bad_usage(err);
  }
  if (s->cfg.app == NULL) return bad_usage("no app file given; usage: scgi-lua APP.lua [options]");
  if (config_check(&s->cfg, err, sizeof err) < 0) return bad_usage(err);
  return -1;
}

int main(int argc, char **argv) {
  static struct server s;
  char err[1024] = "";
  int check = 0;
  config_init(&s.cfg);
  s.ready_fd = s.stats_fd = -1;
  int rc = parse_args(&s, argc, argv, &check);
  if (rc >= 0) return rc;
  s.lua_path_prefix = module_path();
  s.fn_ref = LUA_NOREF;
  s.bindings = &scgi_bindings;
  if (check) /* what the start opens as root first, then the app as a worker loads it */
    rc = listen_check_files(&s.cfg, err, sizeof err) < 0 ? 1 : server_check(&s, err, sizeof err);
  else if (s.serving || s.cfg.no_master)
    rc = server_run(&s, err, sizeof err);
  else
    rc = super_run(&s, argc, argv, err, sizeof err);
  free((char *)s.lua_path_prefix);
  if (rc != 0) {
    if (err[0]) fprintf(stderr, "scgi-lua: %s\n", err);
    return rc;
  }
  if (check == 1) fprintf(stderr, "scgi-lua: %s: ok\n", s.cfg.app);
  return rc;
}
