/* priv.c: the unix socket's owner and dropping root's privileges after binding. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

static int find_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errlen) {
  struct passwd *pw = getpwnam(name);
  char *end;
  if (pw) {
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
  }
  long n = strtol(name, &end, 10);
  if (*name && !*end && n >= 0) {
    *uid = (uid_t)n;
    *gid = (gid_t)n;
    return 0;
  }
  snprintf(err, errlen, "no such user: %s", name);
  return -1;
}

static int find_group(const char *name, gid_t *gid, char *err, size_t errlen) {
  struct group *gr = getgrnam(name);
  char *end;
  if (gr) {
    *gid = gr->gr_gid;
    return 0;
  }
  long n = strtol(name, &end, 10);
  if (*name && !*end && n >= 0) {
    *gid = (gid_t)n;
    return 0;
  }
  snprintf(err, errlen, "no such group: %s", name);
  return -1;
}

int priv_check_names(const struct scgi_config *cfg, char *err, size_t errlen) {
  char user[256], why[256];
  uid_t uid;
  gid_t gid;
  const char *o = cfg->socket_owner, *colon = o ? strchr(o, ':') : NULL;
  if (cfg->user && find_user(cfg->user, &uid, &gid, why, sizeof why) < 0) {
    snprintf(err, errlen, "invalid value for --user: '%s' (no such user)", cfg->user);
    return -1;
  }
  if (cfg->group && find_group(cfg->group, &gid, why, sizeof why) < 0) {
    snprintf(err, errlen, "invalid value for --group: '%s' (no such group)", cfg->group);
    return -1;
  }
  if (o == NULL) return 0;
  snprintf(user, sizeof user, "%.*s", (int)(colon ? colon - o : (long)strlen(o)), o);
  int bad_user = user[0] && find_user(user, &uid, &gid, why, sizeof why) < 0;
  if (bad_user || (colon && colon[1] && find_group(colon + 1, &gid, why, sizeof why) < 0)) {
    snprintf(err, errlen, "invalid value for --socket-owner: '%s' (no such %s)", o,
             bad_user ? "user" : "group");
    return -1;
  }
  return 0;
}

/* --socket-owner USER[:GROUP]: chown the unix socket (as root, or to one's own groups). */
int priv_chown_socket(struct listener *l, const char *owner, char *err, size_t errlen) {
  char user[256];
  const char *colon = strchr(owner, ':');
  uid_t uid = (uid_t)-1;
  gid_t gid = (gid_t)-1, ugid;
  if (!l->is_unix || !l->path[0]) {
    snprintf(err, errlen, "--socket-owner applies to a unix socket path only");
    return -1;
  }
  snprintf(user, sizeof user, "%.*s", (int)(colon ? colon - owner : (long)strlen(owner)), owner);
  if (user[0] && find_user(user, &uid, &ugid, err, errlen) < 0) return -1;
  if (colon && colon[1] && find_group(colon + 1, &gid, err, errlen) < 0) return -1;
  if (chown(l->path, uid, gid) < 0) {
    snprintf(err, errlen,
             "cannot give %s to %s: %s (running as uid %ld; start scgi-lua as root to change "
             "the owner, or use --socket-mode)",
             l->path, owner, strerror(errno), (long)getuid());
    return -1;
  }
  return 0;
}

/* --user and --group: after binding, become that user for good (the app loads after this). */
int priv_drop(const struct scgi_config *cfg, char *err, size_t errlen) {
  uid_t uid = getuid();
  gid_t gid = getgid();
  if (cfg->user && find_user(cfg->user, &uid, &gid, err, errlen) < 0) return -1;
  if (cfg->group && find_group(cfg->group, &gid, err, errlen) < 0) return -1;
  if (geteuid() != 0) {
    if (uid == geteuid() && gid == getegid()) return 0;
    snprintf(err, errlen,
             "cannot switch to user %s and group %s: scgi-lua runs as uid %ld, not root (start it "
             "as root, or leave out --user and --group)",
             cfg->user ? cfg->user : "(same)", cfg->group ? cfg->group : "(same)", (long)geteuid());
    return -1;
  }
  if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
    snprintf(err, errlen, "cannot drop privileges to uid %ld gid %ld: %s", (long)uid, (long)gid,
             strerror(errno));
    return -1;
  }
  if (uid != 0 && setuid(0) == 0) {
    snprintf(err, errlen, "privileges were not dropped: setuid(0) still works");
    return -1;
  }
  slog("running as uid %ld, gid %ld", (long)uid, (long)gid);
  return 0;
}
