/* listen.c: the server's listening socket: its address (the default /tmp/<uid>/scgi, systemd's
   socket, an inherited descriptor), binding it, its owner, and the pid file beside it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

/* The default socket lives in /tmp/<uid>, which anyone could have made first: it must be a real
   directory of ours that nobody else can write, or another user could replace the socket. */
static int check_default_dir(const char *path, char *err, size_t errlen) {
  char dir[256];
  struct stat st;
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  if (lstat(dir, &st) < 0) {
    if (errno != ENOENT) goto bad;
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) goto bad;
    if (lstat(dir, &st) < 0) goto bad;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
    snprintf(err, errlen,
             "%s is not a directory of uid %ld that only it can write (owner uid %ld, mode %o); "
             "refusing to put the socket there: remove it, or choose a --socket",
             dir, (long)geteuid(), (long)st.st_uid, (unsigned)(st.st_mode & 07777));
    return -1;
  }
  return 0;
bad:
  snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
  return -1;
}

/* systemd socket activation: the socket is fd 3 when LISTEN_PID names this process. Taken
   for --socket systemd, and when no --socket is given. */
static const char *socket_address(struct server *s, char *buf, size_t len, char *err,
                                  size_t errlen) {
  const char *addr = s->cfg.socket, *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  int passed = pid && fds && atol(pid) == (long)getpid() && atoi(fds) >= 1;
  int want = addr && strcmp(addr, "systemd") == 0;
  if (want && !passed) {
    snprintf(err, errlen,
             "--socket systemd: no socket was passed (LISTEN_PID and LISTEN_FDS do "
             "not name this process; start it from a systemd .socket unit)");
    return NULL;
  }
  if (passed && (want || addr == NULL)) {
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return "fd:3";
  }
  if (addr) return addr;
  addr = config_default_socket(buf, len);
  return check_default_dir(addr, err, errlen) < 0 ? NULL : addr;
}

static int write_pid_file(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
    snprintf(err, errlen, "cannot write the pid file %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* Binds the listener (or takes the one the supervisor passed), gives the socket its owner,
   writes the pid file. */
int listen_open(struct server *s, char *err, size_t errlen) {
  char where[512];
  const char *addr = socket_address(s, where, sizeof where, err, errlen);
  if (addr == NULL ||
      listener_open(&s->lst, addr, s->cfg.socket_mode, s->cfg.backlog, err, errlen) < 0)
    return -1;
  if (s->cfg.socket_owner && !s->serving &&
      priv_chown_socket(&s->lst, s->cfg.socket_owner, err, errlen) < 0)
    return -1;
  if (s->cfg.pid_file && !s->serving && write_pid_file(s->cfg.pid_file, err, errlen) < 0) return -1;
  atomic_store(&s->listen_fd, s->lst.fd);
  return 0;
}

/* Closes the listener (its socket file removed if still ours) and removes the pid file. */
void listen_close(struct server *s) {
  int had = s->lst.name[0] != 0;
  if (atomic_load(&s->listen_fd) < 0) s->lst.fd = -1; /* a worker or the acceptor closed it */
  listener_close(&s->lst);
  if (s->cfg.pid_file && had && !s->serving && unlink(s->cfg.pid_file) < 0 && errno != ENOENT)
    slog_at(LOG_WARN, "cannot remove %s: %s (uid %ld cannot write its directory)", s->cfg.pid_file,
            strerror(errno), (long)geteuid());
}
